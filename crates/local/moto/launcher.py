"""Start moto's server with what ec2patch's local stack needs.

    <venv>/bin/python crates/local/moto/launcher.py --host 127.0.0.1 --port <MOTO_LISTEN_PORT>

with MOTO_PORT=<ROUTER_PORT> in the environment: moto binds to --port only; MOTO_PORT is
where moto's Step Functions interpreter sends its own service calls (the router).
Never set MOTO_ACCOUNT_ID: it would put every request into one account.

Before the server starts this
  * turns on the Step Functions interpreter (moto's `execute_state_machine` config),
  * plugs jsonata-python into the interpreter's JSONata evaluator (a stub in moto),
  * adds Step Functions ValidateStateMachineDefinition and ListStateMachineVersions,
  * registers the SSM simulation of ssm_sim.py (see README.md).
Each hook point is checked first, so a moto upgrade that moves one fails loudly here.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import os
import sys
from typing import Any

EXPECTED_MOTO = "5.2.5"


def _fail(message: str) -> None:
    sys.exit(f"launcher.py: {message} (written for moto {EXPECTED_MOTO}; check the hook)")


def _require(obj: Any, attr: str) -> Any:
    if not hasattr(obj, attr):
        _fail(f"{getattr(obj, '__name__', obj)!r} has no attribute {attr!r}")
    return getattr(obj, attr)


def enable_interpreter() -> None:
    from moto.core import config

    _require(config, "default_user_config").setdefault("stepfunctions", {})["execute_state_machine"] = True


def hook_jsonata() -> None:
    import jsonata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    # moto calls eval_jsonata_expression(expr), which calls the module global
    # _eval_jsonata (None as shipped; upstream it is a JVM bridge).
    _require(moto_jsonata, "eval_jsonata_expression")
    _require(moto_jsonata, "_eval_jsonata")
    error = _require(moto_jsonata, "JSONataException")

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
        except Exception as ex:  # same contract as moto's JVM bridge
            raise error("UNKNOWN", str(ex))
        # Round-trip: jsonata-python returns list subclasses (JList); moto expects JSON values.
        return json.loads(json.dumps(result))

    moto_jsonata._eval_jsonata = evaluate


def check_interpreter_timeouts() -> None:
    """The interpreter's boto clients (Lambda invoke, SNS, ...) are built in
    boto_client_for() with connect/read timeouts of TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS
    (99,999,999 s in 5.2.5) and no retries.  A Lambda call is therefore never cut short;
    only if a future moto lowers that constant do we raise it to 900 s (Lambda's maximum)."""
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
    from moto.stepfunctions.parser.asl.utils import boto_client

    _require(boto_client, "boto_client_for")
    if _require(TimeoutSeconds, "DEFAULT_TIMEOUT_SECONDS") < 900:
        TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS = 900


# --------------------------------------------------------------------------- Step Functions


def _validation_diagnostics(definition: str) -> list[dict[str, str]]:
    from moto.core.config import default_user_config

    def error(code: str, message: str, location: str = "/") -> list[dict[str, str]]:
        return [{"severity": "ERROR", "code": code, "message": message, "location": location}]

    try:
        parsed = json.loads(definition or "")
    except ValueError as ex:
        return error("INVALID_JSON_DESCRIPTION", f"Definition is not valid JSON: {ex}")
    if not isinstance(parsed, dict):
        return error("SCHEMA_VALIDATION_FAILED", "The definition must be a JSON object.")
    missing = [k for k in ("StartAt", "States") if k not in parsed]
    if missing:
        return error("SCHEMA_VALIDATION_FAILED", f"These fields are required: [{', '.join(missing)}]")
    if not isinstance(parsed["States"], dict) or parsed["StartAt"] not in parsed["States"]:
        return error("MISSING_TRANSITION_TARGET", f"Missing 'Next' target: {parsed['StartAt']}", "/StartAt")
    if default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
        # With the interpreter on, moto's CreateStateMachine parses the definition with
        # its ASL parser and refuses what it cannot run: report that here too.
        from moto.stepfunctions.parser.models import StepFunctionsParserBackend

        try:
            StepFunctionsParserBackend._validate_definition(definition=definition)
        except Exception as ex:
            return error("SCHEMA_VALIDATION_FAILED", getattr(ex, "message", str(ex)))
    return []


def validate_state_machine_definition(self: Any) -> Any:
    from moto.core.responses import ActionResult

    diagnostics = _validation_diagnostics(self._get_param("definition"))
    # Every diagnostic emitted is an ERROR, reported at either "severity" threshold.
    limit = int(self._get_param("maxResults") or 100) or 100
    return ActionResult({
        "result": "FAIL" if diagnostics else "OK",
        "diagnostics": diagnostics[:limit],
        "truncated": len(diagnostics) > limit,
    })


def list_state_machine_versions(self: Any) -> Any:
    from moto.core.responses import ActionResult
    from moto.stepfunctions.exceptions import InvalidToken

    machine = self.stepfunction_backend.describe_state_machine(self._get_param("stateMachineArn"))
    versions = sorted(getattr(machine, "versions", {}).values(), key=lambda v: -v.version)
    start = 0
    if self._get_param("nextToken"):
        try:
            start = int(base64.b64decode(self._get_param("nextToken")))
        except ValueError:
            raise InvalidToken("nextToken is not valid")
    limit = int(self._get_param("maxResults") or 100) or 100
    page = versions[start:start + limit]
    body: dict[str, Any] = {
        "stateMachineVersions": [
            {"stateMachineVersionArn": v.arn, "creationDate": v.creation_date} for v in page
        ]
    }
    if start + limit < len(versions):
        body["nextToken"] = base64.b64encode(str(start + limit).encode()).decode()
    return ActionResult(body)


def send_task_failure(self: Any) -> Any:
    """moto 5.2.5's SendTaskFailure drops `cause`; the interpreter's backend accepts it."""
    from moto.core.responses import EmptyResult

    backend = self.stepfunction_backend
    kwargs = {"error": self._get_param("error")}
    if "cause" in inspect.signature(backend.send_task_failure).parameters:
        kwargs["cause"] = self._get_param("cause")
    backend.send_task_failure(self._get_param("taskToken"), **kwargs)
    return EmptyResult()


def add_stepfunctions_ops() -> None:
    from moto.stepfunctions.responses import StepFunctionResponse

    _require(StepFunctionResponse, "stepfunction_backend")
    # moto dispatches X-Amz-Target AWSStepFunctions.<Op> to the method
    # camelcase_to_underscores(<Op>) of the response class.
    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
    StepFunctionResponse.list_state_machine_versions = list_state_machine_versions
    _require(StepFunctionResponse, "send_task_failure")
    StepFunctionResponse.send_task_failure = send_task_failure


# --------------------------------------------------------------------------- SSM


def add_ssm_ops() -> None:
    from moto.ssm.responses import SimpleSystemManagerResponse

    import ssm_sim

    _require(SimpleSystemManagerResponse, "ssm_backend")
    from moto.ec2.models.instances import InstanceBackend

    _require(InstanceBackend, "all_running_instances")
    from moto.ssm.models import SimpleSystemManagerBackend

    _require(SimpleSystemManagerBackend, "get_patch_baseline_for_patch_group")
    ssm_sim.install(SimpleSystemManagerResponse)


def configure() -> None:
    if "MOTO_ACCOUNT_ID" in os.environ:
        _fail("MOTO_ACCOUNT_ID is set: it would merge all accounts into one; unset it")
    import moto

    if moto.__version__ != EXPECTED_MOTO:
        print(f"launcher.py: warning: moto {moto.__version__}, hooks written for {EXPECTED_MOTO}",
              file=sys.stderr)
    enable_interpreter()
    hook_jsonata()
    check_interpreter_timeouts()
    add_stepfunctions_ops()
    add_ssm_ops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure()
    from moto import server

    # moto's main() only uses MOTO_PORT as the default of --port; an explicit --port wins.
    # It runs werkzeug's run_simple(threaded=True): one thread per request.
    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
