"""Documentation moves with the code: every flag and variable is documented."""

from backup_repository.settings import OPTIONS
from tests.support import ROOT


def test_every_flag_and_variable_is_in_the_configuration_docs():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        assert f"`{', '.join(option.flags)}`" in text, option.flags
        if option.env:
            assert f"`{option.env}`" in text, option.env
    for command in ("--encode-password", "--hash-jwt", "--validate-config"):
        assert command in text
