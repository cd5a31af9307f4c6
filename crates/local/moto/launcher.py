"""Start moto's server with what ec2patch's local stack needs.

    <venv>/bin/python crates/local/moto/launcher.py --host 127.0.0.1 --port <MOTO_LISTEN_PORT>

with MOTO_PORT=<ROUTER_PORT> in the environment: moto binds to --port only; MOTO_PORT is
where moto's Step Functions interpreter sends its own service calls (the router).
Never set MOTO_ACCOUNT_ID: it would put every request into one account.

Before the server starts this
  * turns on the Step Functions interpreter (moto's `execute_state_machine` config),
  * plugs jsonata-python into the interpreter's JSONata evaluator (a stub in moto),
  * adds Step Functions ValidateStateMachineDefinition and ListStateMachineVersions,
  * registers the SSM simulation of ssm_sim.py (see README.md), Change Calendars included,
  * applies AssumeRole session policies when IAM enforcement is on (moto ignores them),
  * makes EC2 CreateSnapshots honour CopyTagsFromSource=volume (moto ignores it),
  * makes DynamoDB TransactWriteItems back up the items it touches, not whole tables, and a
    Query on a table's key read its partition, not every item of the table,
  * remembers the account of each access key and the backend of each host name (moto works
    both out again on every request, walking every account and listing its own package), and
    reads SSM's default patch baselines once instead of once per instance reported.
Each hook point is checked first, so a moto upgrade that moves one fails loudly here.
"""

from __future__ import annotations

import argparse
import base64
import functools
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


# --------------------------------------------------------------------------- Distributed Map
#
# moto 5.2.5 runs a Distributed Map's items in worker threads sharing one throw-away event
# list: no child executions exist, ToleratedFailure* is parsed but ignored (a failed child is
# dropped silently), an integer ToleratedFailurePercentage is refused by the parser, the
# ResultWriter's Parameters are evaluated against the Map's results instead of the state's input,
# it writes a manifest listing no result files, and a stopped parent leaves its map run
# SUCCEEDED. The patches below make each of these behave as AWS documents it.


def _children(account: str, region: str) -> dict[str, "ChildExecution"]:
    """The child executions of every map run of an account/region (cleared by moto's reset)."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[account][region]
    return backend.__dict__.setdefault("ec2patch_map_children", {})


class ChildExecution:
    """One item of a Distributed Map as AWS shows it: a STANDARD execution named by a uuid under
    the map run's state machine ARN, with its own history, described and listed by the ordinary
    execution APIs (ListExecutions with mapRunArn)."""

    def __init__(self, map_run_record: Any, role_arn: str) -> None:
        import datetime
        import uuid

        self.name = str(uuid.uuid4())
        self.map_run_arn = map_run_record.map_run_arn
        self.state_machine_arn = map_run_record.map_state_machine_arn
        self.execution_arn = f"{self.state_machine_arn.replace(':stateMachine:', ':execution:')}:{self.name}"
        self.role_arn = role_arn
        self.start_date = datetime.datetime.now(tz=datetime.timezone.utc)
        self.stop_date = None
        self.status = "RUNNING"
        self.input: Any = None
        self.output: Any = None
        self.error: str | None = None
        self.cause: str | None = None
        from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

        self.event_manager = EventManager()

    @property
    def execution_input(self) -> str:
        return json.dumps(self.input, separators=(",", ":"))

    def finish(self, status: str, output: Any = None, error: str | None = None, cause: str | None = None) -> None:
        import datetime

        self.status, self.output, self.error, self.cause = status, output, error, cause
        self.stop_date = datetime.datetime.now(tz=datetime.timezone.utc)

    def list_item(self) -> dict[str, Any]:
        item = {"executionArn": self.execution_arn, "name": self.name, "startDate": self.start_date,
                "stateMachineArn": self.state_machine_arn, "status": self.status, "mapRunArn": self.map_run_arn}
        if self.stop_date is not None:
            item["stopDate"] = self.stop_date
        return item

    def describe(self) -> dict[str, Any]:
        described = {**self.list_item(), "input": self.execution_input,
                     "inputDetails": {"included": True}}
        if self.status == "SUCCEEDED":
            described["output"] = json.dumps(self.output, separators=(",", ":"))
            described["outputDetails"] = {"included": True}
        if self.error is not None:
            described["error"] = self.error
        if self.cause is not None:
            described["cause"] = self.cause
        return described

    def result_entry(self) -> dict[str, Any]:
        """This child as a ResultWriter result file lists it."""
        entry = {"ExecutionArn": self.execution_arn, "Input": self.execution_input,
                 "InputDetails": {"Included": True}, "Name": self.name,
                 "StartDate": self.start_date.isoformat(), "StateMachineArn": self.state_machine_arn,
                 "Status": self.status, "StopDate": self.stop_date.isoformat() if self.stop_date else None,
                 "RedriveCount": 0, "RedriveStatus": "NOT_REDRIVABLE"}
        if self.status == "SUCCEEDED":
            entry["Output"] = json.dumps(self.output, separators=(",", ":"))
            entry["OutputDetails"] = {"Included": True}
        else:
            entry["Error"], entry["Cause"] = self.error, self.cause
        return entry


def run_distributed_item_as_child(self: Any, env: Any, job: Any) -> None:
    """Replaces DistributedItemProcessorWorker._eval_job: the item runs as a child execution with
    its own history and context ($$.Execution is the child's), registered so the execution APIs
    find it; its end state is counted in the map run and kept for the tolerance check and the
    ResultWriter."""
    from moto.stepfunctions.parser.api import (
        ExecutionAbortedEventDetails,
        ExecutionFailedEventDetails,
        ExecutionStartedEventDetails,
        ExecutionSucceededEventDetails,
        HistoryEventType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventHistoryContext
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramStopped, ProgramTimedOut
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    record = self._map_run_record
    if not self._env.is_running():
        # The parent was stopped (or failed): no further child starts.
        job.job_output = None
        return
    details = env.aws_execution_details
    child = ChildExecution(record, details.role_arn)
    _children(details.account, details.region)[child.execution_arn] = child
    record.item_counter.total.count()
    record.item_counter.running.count()
    record.execution_counter.total.count()
    record.execution_counter.running.count()
    # The child's own history: a fresh event list and event ids from 1.
    env.event_manager = child.event_manager
    env.event_history_context = EventHistoryContext.of_program_start()
    started = False
    try:
        env.states.context_object.context_object_data["Map"] = MapData(
            Item=ItemData(Index=job.job_index, Value=job.job_input))
        env.states.reset(job.job_input)
        env.stack.append(env.states.get_input())
        self._eval_input(env_frame=env)
        child.input = env.states.get_input()
        env.states.context_object.context_object_data["Execution"] = {
            "Id": child.execution_arn, "Input": child.input, "Name": child.name,
            "RoleArn": child.role_arn, "StartTime": child.start_date.isoformat()}
        env.states.context_object.context_object_data.pop("Map", None)
        env.event_manager.add_event(
            context=env.event_history_context,
            event_type=HistoryEventType.ExecutionStarted,
            event_details=EventDetails(executionStartedEventDetails=ExecutionStartedEventDetails(
                input=child.execution_input, inputDetails={"truncated": False}, roleArn=child.role_arn)),
            update_source_event_id=False)
        started = True
        job.job_program.eval(env)
        end = env.program_state()
    except Exception as ex:  # the item could not even start (e.g. its ItemSelector failed)
        from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
            FailureEventException,
        )

        if isinstance(ex, FailureEventException):
            pair = ex.extract_error_cause_pair() or ("States.Runtime", str(ex))
        else:
            pair = ("States.Runtime", f"{type(ex).__name__}({ex})")
        end = ProgramError(error=ExecutionFailedEventDetails(error=pair[0], cause=pair[1]))
    if not started:
        child.input = child.input if child.input is not None else job.job_input
    output = None
    if isinstance(end, ProgramError):
        error = end.error or {}
        child.finish("FAILED", error=error.get("error"), cause=error.get("cause"))
        env.event_manager.add_event(
            context=env.event_history_context, event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(executionFailedEventDetails=ExecutionFailedEventDetails(
                **{k: v for k, v in error.items() if k in ("error", "cause") and v is not None})))
        record.execution_counter.failed.count()
        record.item_counter.failed.count()
    elif isinstance(end, ProgramStopped):
        child.finish("ABORTED")
        env.event_manager.add_event(
            context=env.event_history_context, event_type=HistoryEventType.ExecutionAborted,
            event_details=EventDetails(executionAbortedEventDetails=ExecutionAbortedEventDetails()))
        record.execution_counter.aborted.count()
        record.item_counter.aborted.count()
    elif isinstance(end, ProgramTimedOut):
        child.finish("TIMED_OUT")
        env.event_manager.add_event(context=env.event_history_context,
                                    event_type=HistoryEventType.ExecutionTimedOut)
        record.execution_counter.timed_out.count()
        record.item_counter.timed_out.count()
    else:
        output = env.states.get_input()
        child.finish("SUCCEEDED", output=output)
        env.event_manager.add_event(
            context=env.event_history_context, event_type=HistoryEventType.ExecutionSucceeded,
            event_details=EventDetails(executionSucceededEventDetails=ExecutionSucceededEventDetails(
                output=json.dumps(output, separators=(",", ":")), outputDetails={"truncated": False})))
        for counter in (record.item_counter, record.execution_counter):
            counter.succeeded.count()
            counter.results_written.count()
    record.item_counter.running.offset(-1)
    record.execution_counter.running.offset(-1)
    job.job_output = output


def _tolerance_exceeded(env: Any, record: Any) -> bool:
    """AWS: with neither ToleratedFailure field declared, any failed child fails the map run;
    a declared count or percentage fails it once the failures pass that threshold."""
    count_declared, percentage_declared = getattr(env, "ec2patch_tolerance_declared", (False, False))
    failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
    total = record.item_counter.total.get()
    if failed == 0:
        return False
    if not count_declared and not percentage_declared:
        return True
    if count_declared and failed > record.tolerated_failure_count:
        return True
    return percentage_declared and total > 0 and failed * 100.0 / total > record.tolerated_failure_percentage


def patch_distributed_map() -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map import state_map
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as distributed,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import result_writer_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
        resource_eval_s3,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunStatus
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.api import EvaluationFailedEventDetails

    worker_class = _require(worker, "DistributedItemProcessorWorker")
    _require(worker_class, "_eval_job")
    _require(worker_class, "_eval_input")
    worker_class._eval_job = run_distributed_item_as_child

    # ToleratedFailure*: remember which were declared; fail the map run past the threshold.
    map_class = _require(state_map, "StateMap")
    original_from_props = _require(map_class, "from_state_props")
    original_eval_execution = _require(map_class, "_eval_execution")
    count_decl = _require(state_map, "ToleratedFailureCountDecl")
    percentage_decl = _require(state_map, "ToleratedFailurePercentageDecl")

    def from_state_props(self: Any, state_props: Any) -> None:
        original_from_props(self, state_props)
        self.ec2patch_tolerance_declared = (state_props.get(count_decl) is not None,
                                            state_props.get(percentage_decl) is not None)

    def eval_execution(self: Any, env: Any) -> None:
        env.ec2patch_tolerance_declared = getattr(self, "ec2patch_tolerance_declared", (False, False))
        original_eval_execution(self, env)

    map_class.from_state_props = from_state_props
    map_class._eval_execution = eval_execution

    component = _require(distributed, "DistributedIterationComponent")
    original_map_run = _require(component, "_map_run")
    original_component_body = _require(component, "_eval_body")

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original_map_run(self, env, eval_input)
        if env.is_running() and _tolerance_exceeded(env, eval_input.map_run_record):
            error_name = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
            raise FailureEventException(failure_event=FailureEvent(
                env=env, error_name=error_name, event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(evaluationFailedEventDetails=EvaluationFailedEventDetails(
                    error=error_name.error_name,
                    cause="The specified tolerated failure threshold was exceeded"))))

    def component_body(self: Any, env: Any) -> None:
        eval_input = env.stack[-1]
        original_component_body(self, env)
        if isinstance(env.program_state(), ProgramStopped):
            eval_input.map_run_record.set_stop(status=MapRunStatus.ABORTED)

    component._map_run = map_run
    component._eval_body = component_body

    # ItemReader s3:listObjectsV2: every page, and no objects is zero items (moto read
    # response["Contents"] of the first page only: KeyError on an empty prefix, 1000 items at most).
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
        resource_eval_s3 as reader_s3,
    )

    reader_class = _require(reader_s3, "ResourceEvalS3")
    _require(reader_class, "_handle_list_objects_v2")
    reader_class._handle_list_objects_v2 = staticmethod(list_all_objects)

    # ResultWriter: Parameters are evaluated against the state's input, as on AWS.
    writer_class = _require(result_writer_decl, "ResultWriter")
    _require(writer_class, "_eval_body")

    def write_results(self: Any, env: Any) -> None:
        results = env.stack.pop()
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(results)
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    writer_class._eval_body = write_results
    s3_writer = _require(resource_eval_s3, "ResourceEvalS3")
    _require(s3_writer, "_handle_put_object")
    s3_writer._handle_put_object = staticmethod(put_map_run_results)

    # ToleratedFailurePercentage 100 (an integer, as JSON writers emit it) is valid ASL; moto's
    # grammar only takes a decimal there.
    parser_class = _require(asl_parser, "AmazonStateLanguageParser")
    original_parse = _require(parser_class, "parse")

    def parse(definition: str) -> Any:
        return original_parse(_decimal_tolerated_percentages(definition))

    parser_class.parse = staticmethod(parse)


def list_all_objects(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    s3 = boto_client_for(service="s3", region=resource_runtime_part.region, state_credentials=state_credentials)
    parameters = dict(env.stack.pop())
    items: list[Any] = []
    while True:
        page = s3.list_objects_v2(**parameters)
        items.extend(page.get("Contents", []))
        if not page.get("IsTruncated"):
            break
        parameters["ContinuationToken"] = page["NextContinuationToken"]
    env.stack.append(items)


def _decimal_tolerated_percentages(definition: str) -> str:
    try:
        parsed = json.loads(definition)
    except ValueError:
        return definition
    changed = False

    def walk(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            value = node.get("ToleratedFailurePercentage")
            if isinstance(value, int) and not isinstance(value, bool):
                node["ToleratedFailurePercentage"] = float(value)
                changed = True
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(parsed)
    return json.dumps(parsed) if changed else definition


def put_map_run_results(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
    """ResultWriter s3:putObject: `<Prefix>/<map run id>/manifest.json` plus SUCCEEDED_0.json /
    FAILED_0.json (and so on) listing each child as AWS's result files do."""
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    parameters = env.stack.pop()
    env.stack.pop()  # the Map's results: AWS writes executions, not the results array
    s3 = boto_client_for(service="s3", region=resource_runtime_part.region, state_credentials=state_credentials)
    record = env.map_run_record_pool_manager.get_all().pop()
    prefix = parameters.get("Prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = prefix + record.map_run_arn.split(":")[-1] + "/"
    details = env.aws_execution_details
    children = [c for c in _children(details.account, details.region).values() if c.map_run_arn == record.map_run_arn]
    files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    for kind, members in (("SUCCEEDED", ["SUCCEEDED"]), ("FAILED", ["FAILED", "TIMED_OUT", "ABORTED"])):
        entries = [c.result_entry() for c in sorted(children, key=lambda c: c.start_date) if c.status in members]
        if entries:
            body = json.dumps(entries).encode()
            key = f"{base}{kind}_0.json"
            s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
            files[kind].append({"Key": key, "Size": len(body)})
    manifest = {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn, "ResultFiles": files}
    key = base + "manifest.json"
    s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=json.dumps(manifest, indent=2).encode())
    env.stack.append({"MapRunArn": record.map_run_arn,
                      "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": key}})


def _child_or_none(self: Any, arn: str | None) -> ChildExecution | None:
    if not arn:
        return None
    return _children(self.current_account, self.region).get(arn)


def add_child_execution_ops() -> None:
    """DescribeExecution / GetExecutionHistory / ListExecutions(mapRunArn) see map run children."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    original_describe = _require(StepFunctionResponse, "describe_execution")
    original_history = _require(StepFunctionResponse, "get_execution_history")
    original_list = _require(StepFunctionResponse, "list_executions")

    def describe_execution(self: Any) -> Any:
        child = _child_or_none(self, self._get_param("executionArn"))
        return ActionResult(child.describe()) if child else original_describe(self)

    def get_execution_history(self: Any) -> Any:
        child = _child_or_none(self, self._get_param("executionArn"))
        if child is None:
            return original_history(self)
        events = child.event_manager.get_event_history()
        if self._get_param("reverseOrder"):
            events = list(reversed(events))
        return ActionResult({"events": events})

    def list_executions(self: Any) -> Any:
        map_run_arn = self._get_param("mapRunArn")
        if not map_run_arn:
            return original_list(self)
        status = self._get_param("statusFilter")
        children = [c for c in _children(self.current_account, self.region).values()
                    if c.map_run_arn == map_run_arn and (not status or c.status == status)]
        children.sort(key=lambda c: c.start_date, reverse=True)
        start = int(self._get_param("nextToken") or 0)
        limit = int(self._get_param("maxResults") or 100) or 100
        body: dict[str, Any] = {"executions": [c.list_item() for c in children[start:start + limit]]}
        if start + limit < len(children):
            body["nextToken"] = str(start + limit)
        return ActionResult(body)

    StepFunctionResponse.describe_execution = describe_execution
    StepFunctionResponse.get_execution_history = get_execution_history
    StepFunctionResponse.list_executions = list_executions


# --------------------------------------------------------------------------- IAM


def enforce_session_policies() -> None:
    """A session policy (AssumeRole's `Policy`) limits the session to what both it and the
    role's policies allow (AWS: the intersection; an explicit deny in either denies). moto 5.2.5
    stores the policy on the assumed role but authorizes the session by the role's policies
    alone, so a read-only session could still do whatever its role may."""
    from moto.iam import access_control
    from moto.sts.models import sts_backends

    key_class = _require(access_control, "AssumedRoleAccessKey")
    request_class = _require(access_control, "IAMRequestBase")
    policy_class = _require(access_control, "IAMPolicy")
    result = _require(access_control, "PermissionResult")
    original_init = key_class.__init__
    original_check = _require(request_class, "check_action_permitted")
    if "session_policy" in inspect.signature(original_init).parameters:
        _fail("AssumedRoleAccessKey already takes a session policy")

    def init(self: Any, account_id: str, partition: str, access_key_id: str, headers: dict[str, str]) -> None:
        original_init(self, account_id, partition, access_key_id, headers)
        self.session_policy = next(
            (role.policy for role in sts_backends[account_id][partition].assumed_roles
             if role.access_key_id == access_key_id),
            None,
        )

    def check_action_permitted(self: Any, resource: str) -> None:
        original_check(self, resource)
        session_policy = getattr(self._access_key, "session_policy", None)
        if session_policy and self._action != "sts:GetCallerIdentity":
            decision = policy_class(session_policy).is_action_permitted(self._action, resource)
            if decision != result.PERMITTED:
                self._raise_access_denied()

    key_class.__init__ = init
    request_class.check_action_permitted = check_action_permitted


def remember_access_key_accounts() -> None:
    """The account of an access key is remembered, not searched for on every request. moto 5.2.5
    answers each request without an `x-moto-account-id` header (every call made with AssumeRole
    or IAM keys) with get_account_id_from(key): a walk over every account's IAM backend in each
    of its six partitions until one holds the key, or all of them for a key none holds. With a
    thousand spoke accounts that walk cost more than the rest of a DescribeInstances. Here the
    account is noted when IAM makes the key (CreateAccessKey, or the temporary key of
    AssumeRole), or else found by moto's walk once, and is answered only while that account's
    IAM backend still holds the key (a deleted key or moto's reset fall back to moto's walk);
    keys no account holds are walked for every time, as before. Same answers, as access key ids
    are random and unique across accounts."""
    from moto.iam import models

    original = _require(models, "get_account_id_from")
    iam = _require(models, "IAMBackend")
    made_keys = {name: _require(iam, name) for name in ("create_access_key", "create_temp_access_key")}
    _require(models, "iam_backends")
    _require(models, "DEFAULT_ACCOUNT_ID")
    if "iam_backends.items()" not in inspect.getsource(original):
        _fail("get_account_id_from no longer walks every account's IAM backend")
    found: dict[str, str] = {}

    def holds(account_id: str, access_key: str) -> bool:
        # dict.get and .values(): unlike moto's [] these never create a backend.
        account = dict.get(models.iam_backends, account_id)
        return account is not None and any(access_key in b.access_keys for b in dict.values(account))

    def get_account_id_from(access_key: str) -> str:
        account_id = found.get(access_key)
        if account_id is not None:
            if holds(account_id, access_key):
                return account_id
            found.pop(access_key, None)
        account_id = original(access_key)
        if holds(account_id, access_key):  # not the default answer for a key nobody holds
            found[access_key] = account_id
        return account_id

    def noting(make: Any) -> Any:
        def make_key(self: Any, *args: Any, **kwargs: Any) -> Any:
            key = make(self, *args, **kwargs)
            found[key.physical_resource_id] = self.account_id
            return key

        return make_key

    get_account_id_from.__wrapped__ = original  # type: ignore[attr-defined]
    models.get_account_id_from = get_account_id_from
    for name, make in made_keys.items():
        setattr(iam, name, noting(make))


# --------------------------------------------------------------------------- Server


def remember_backends_by_host() -> None:
    """Which moto service a request goes to is worked out once per host name. moto 5.2.5's
    DomainDispatcherApplication.get_backend_for_host(host) lists moto's package directory and
    stats each of its ~175 entries (`host in list_of_moto_modules()`), then tries up to ~180 URL
    regexes, on every request and under the dispatcher's one lock: ~0.7 ms of each call, with
    all request threads queued behind it. Its answer depends on the host name alone (the
    package's folders and the URL patterns do not change while the server runs), so it is
    remembered per host. Hosts with no backend (None) are not remembered: moto still prints its
    "Unable to find appropriate backend" line for each."""
    from moto.moto_server import werkzeug_app

    app_class = _require(werkzeug_app, "DomainDispatcherApplication")
    original = _require(app_class, "get_backend_for_host")
    _require(werkzeug_app.backends, "list_of_moto_modules")
    if "list_of_moto_modules()" not in inspect.getsource(original):
        _fail("DomainDispatcherApplication.get_backend_for_host no longer lists moto's modules")
    limit = 4096  # host names come from signatures; a client inventing them cannot grow this forever

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        remembered = self.__dict__.setdefault("_ec2patch_backend_by_host", {})
        backend = remembered.get(host)
        if backend is None:
            backend = original(self, host)
            if backend is not None and len(remembered) < limit:
                remembered[host] = backend
        return backend

    get_backend_for_host.__wrapped__ = original  # type: ignore[attr-defined]
    app_class.get_backend_for_host = get_backend_for_host


# --------------------------------------------------------------------------- EC2


def copy_tags_from_source() -> None:
    """CreateSnapshots with CopyTagsFromSource=volume copies each volume's tags to its snapshot
    (AWS: before the TagSpecifications, which win on the same key). moto 5.2.5 parses the
    parameter nowhere and copies nothing."""
    from moto.ec2.models.elastic_block_store import EBSBackend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    original_response = _require(ElasticBlockStore, "create_snapshots")
    original_backend = _require(EBSBackend, "create_snapshots")
    from moto.ec2.models.tags import TagBackend

    _require(TagBackend, "describe_tags")
    if "copy_tags_from_source" in inspect.signature(original_backend).parameters:
        _fail("EBSBackend.create_snapshots already takes CopyTagsFromSource")

    def create_snapshots_response(self: Any) -> Any:
        self.ec2_backend._ec2patch_copy_tags = self._get_param("CopyTagsFromSource") == "volume"
        try:
            return original_response(self)
        finally:
            self.ec2_backend._ec2patch_copy_tags = False

    def create_snapshots(self: Any, instance_spec: dict[str, Any], description: str, tags: dict[str, str]) -> Any:
        snapshots = original_backend(self, instance_spec, description, tags)
        if getattr(self, "_ec2patch_copy_tags", False):
            for snapshot in snapshots:
                volume_tags = dict(self.tags.get(snapshot.volume.id, {}))  # EC2 backend's TagBackend
                copied = {k: v for k, v in volume_tags.items() if k not in tags and not k.startswith("aws:")}
                snapshot.add_tags(copied)
        return snapshots

    ElasticBlockStore.create_snapshots = create_snapshots_response
    EBSBackend.create_snapshots = create_snapshots


# --------------------------------------------------------------------------- DynamoDB


def transactions_back_up_items_not_tables() -> None:
    """TransactWriteItems backs up the items it touches, not whole tables. moto 5.2.5 deep-copies
    the whole table once per action before running a transaction (for its rollback): a 100-action
    transaction on a table of N items copies 100 x N items (the benchmark's moto grew to 21 GB).
    Here the module's deepcopy leaves tables alone, which makes moto's rollback a no-op, and the
    wrapper restores the touched items instead when the transaction fails: the same outcome."""
    from moto.dynamodb import models

    backend = _require(models, "DynamoDBBackend")
    original = _require(backend, "transact_write_items")
    table_type = _require(models, "Table")
    real_copy = _require(models, "copy")
    if "original_table_state" not in inspect.getsource(original):
        _fail("DynamoDBBackend.transact_write_items no longer backs up whole tables")

    class TablesNotCopied:
        """The `copy` module as moto.dynamodb.models sees it: deepcopy of a Table is the table."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, table_type) else real_copy.deepcopy(value, memo)

    def touched_items(self: Any, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict, Any]]:
        """(table, key, attributes before or None) of every action's item."""
        touched = []
        for action in transact_items:
            _, op = next(iter(action.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            if "Item" in op:
                names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
                key = {name: op["Item"][name] for name in names if name in op["Item"]}
            elif "Key" in op:
                key = op["Key"]
            else:
                continue
            try:
                before = self.get_item(table.name, key)
            except Exception:  # noqa: BLE001 - a malformed key: moto's own checks report it
                continue
            touched.append((table.name, key, real_copy.deepcopy(before.to_json()["Attributes"]) if before else None))
        return touched

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched = touched_items(self, transact_items)
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, before in reversed(touched):
                if before is None:
                    if self.get_item(table_name, key) is not None:
                        self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, before)
            raise

    models.copy = TablesNotCopied
    backend.transact_write_items = transact_write_items


def queries_read_their_partition() -> None:
    """A Query on a table's own key reads that partition only. moto 5.2.5 lists and sorts every
    item of the table for each Query (Table.all_items), then keeps the queried partition's: on a
    table holding many runs' records one Query of a small partition costs as much as a Scan,
    where DynamoDB reads the partition alone. Here, while a thread runs a base-table Query,
    all_items() of that table gives the queried partition only, in the same order (a per-thread
    hint: concurrent requests on other threads still see the whole table). Index queries, which
    must look at every item, are left as they are."""
    import threading

    from moto.dynamodb.models import table as table_module

    table_type = _require(table_module, "Table")
    original_query = _require(table_type, "query")
    original_all_items = _require(table_type, "all_items")
    signature = inspect.signature(original_query)
    if list(signature.parameters)[:2] != ["self", "hash_key"] or "index_name" not in signature.parameters:
        _fail(f"Table.query{signature} no longer takes (hash_key, ..., index_name)")
    source = inspect.getsource(original_query)
    if "item.hash_key == hash_key" not in source or "self.all_items()" not in source:
        _fail("Table.query no longer keeps the partition out of all_items()")
    hint = threading.local()

    def all_items(self: Any) -> Any:
        partition = getattr(hint, "partition", None)
        if partition is None or partition[0] is not self:
            return original_all_items(self)
        # .get: self.items is a defaultdict, and reading must not add an empty partition.
        hash_set = self.items.get(partition[1])
        if hash_set is None:
            return []
        items = list(hash_set.values()) if self.range_key_attr else [hash_set]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    @functools.wraps(original_query)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        if bound.arguments.get("index_name") or bound.arguments.get("hash_key") is None:
            return original_query(self, *args, **kwargs)
        outer = getattr(hint, "partition", None)
        hint.partition = (self, bound.arguments["hash_key"])
        try:
            return original_query(self, *args, **kwargs)
        finally:
            hint.partition = outer

    table_type.all_items = all_items
    table_type.query = query


# --------------------------------------------------------------------------- SSM


def remember_default_patch_baselines() -> None:
    """AWS's default patch baselines are read from moto's resource file once, not per instance.
    moto 5.2.5's get_patch_baseline_for_patch_group builds a FakePatchGroup for a patch group
    with no registered baseline, and each one reads and decompresses
    ssm/resources/default_baselines.json (34 regions x 15 operating systems): ~0.3 ms for every
    instance DescribeInstancePatchStates reports. Here the file is read once and each
    FakePatchGroup gets its own copy of its region's table, as before (a registration changes
    only that group's copy)."""
    from moto.ssm import models

    group_class = _require(models, "FakePatchGroup")
    original = _require(group_class, "_load_latest_baselines")
    _require(models, "load_resource")
    resource = "ssm/resources/default_baselines.json"
    if resource not in inspect.getsource(original):
        _fail(f"FakePatchGroup._load_latest_baselines no longer reads {resource}")
    loaded: dict[str, Any] = {}

    def _load_latest_baselines(self: Any) -> None:
        if "baselines" not in loaded:
            try:
                loaded["baselines"] = models.load_resource(resource)
            except FileNotFoundError:
                loaded["baselines"] = {}
        self.default_associations = dict(loaded["baselines"][self.region_name])

    _load_latest_baselines.__wrapped__ = original  # type: ignore[attr-defined]
    group_class._load_latest_baselines = _load_latest_baselines


def add_ssm_ops() -> None:
    from moto.ssm.responses import SimpleSystemManagerResponse

    import ssm_sim

    _require(SimpleSystemManagerResponse, "ssm_backend")
    from moto.ec2.models.instances import InstanceBackend

    _require(InstanceBackend, "all_running_instances")
    from moto.ssm import models

    _require(models.SimpleSystemManagerBackend, "get_patch_baseline_for_patch_group")
    # Change Calendar documents (TEXT) go through moto's document store: its format check, its
    # Document constructor, its content conversion and its GetDocument.
    _require(models, "_validate_document_format")
    _require(models, "Document")
    _require(models.SimpleSystemManagerBackend, "_get_document_content")
    _require(SimpleSystemManagerResponse, "get_document")
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
    patch_distributed_map()
    add_child_execution_ops()
    add_ssm_ops()
    enforce_session_policies()
    remember_access_key_accounts()
    remember_backends_by_host()
    remember_default_patch_baselines()
    copy_tags_from_source()
    transactions_back_up_items_not_tables()
    queries_read_their_partition()


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
