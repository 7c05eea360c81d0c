"""Health as the API shows it (docs/openapi.yaml ``HealthCheck``, ``HealthData`` and /health; docs/api.md#health;
the probe listener's /ready: docs/kubernetes.md#probes)."""

from backup_repository.health.checks import CheckResult

ALIVE = "The server is up and running. Dependent services are not shown there. Take a look at /ready endpoint"


def check(result: CheckResult) -> dict:
    """One check, as the Go server shows it: ``status`` a boolean and ``statusText`` the same as ``name=bool``."""
    return {
        "name": result.name,
        "status": result.ok,
        "statusText": f"{result.name}={'true' if result.ok else 'false'}",
        "message": result.message,
    }


def health(results) -> dict:
    """``/ready`` and collection health: every check, passed or not, in the order run."""
    return {"health": [check(result) for result in results]}


def alive() -> dict:
    """``/health``: the process answers."""
    return {"msg": ALIVE}


def probe_ready() -> dict:
    """The probe listener's ``/ready`` when every check passes."""
    return {"ready": True}


def probe_not_ready(failed) -> dict:
    """The probe listener's ``/ready`` otherwise: the names of the failed checks, never their messages."""
    return {"ready": False, "failed": list(failed)}
