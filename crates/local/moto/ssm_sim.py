"""Simulated SSM Run Command / patching on top of moto's EC2 and SSM backends, and SSM
Change Calendars (TEXT ChangeCalendar documents in moto's document store, GetCalendarState).

`install(response_cls)` registers one handler per operation on moto's SSM response
class; moto dispatches `X-Amz-Target: AmazonSSM.<Op>` to the method named
`camelcase_to_underscores(<Op>)` on that class, so a handler is just a function
`handler(response) -> ActionResult`.  moto serializes the returned dict with the
botocore service model (timestamps, dropping unknown keys) and serializes a raised
`ServiceException(code, message)` as the AWS JSON error `{"__type": code,
"message": ...}` with HTTP 400.

Everything is scoped to the account and region of the request: the state lives on
`ssm_backends[account][region]` (so moto's `/moto-api/reset` clears it) and the
instances come from `ec2_backends[account][region]`.  See README.md for the tags.
"""

from __future__ import annotations

import base64
import heapq
import inspect
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from botocore.session import get_session
from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.ec2.models import ec2_backends

TAG = "ec2patch:sim:"
TAG_MANAGED = TAG + "managed"
TAG_PING = TAG + "ping"
TAG_SECONDS = TAG + "patch-seconds"
TAG_OUTCOME = TAG + "patch-outcome"
TAG_MISSING = TAG + "missing"
TAG_FAILED = TAG + "failed-patches"
TAG_PENDING_REBOOT = TAG + "pending-reboot"
TAG_INSTALLED = TAG + "installed"

PING_STATUSES = ("Online", "ConnectionLost", "Inactive")
# outcome tag value -> (invocation Status, StatusDetails, ResponseCode)
OUTCOMES = {
    "success": ("Success", "Success", 0),
    "failed": ("Failed", "Failed", 1),
    "timed-out": ("TimedOut", "ExecutionTimedOut", -1),
    "cancelled": ("Cancelled", "Cancelled", -1),
}
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
AGENT_VERSION = "3.3.1142.0"
PATCH_DOC = "AWS-RunPatchBaseline"
PATCH_DOC_PARAMS = {
    "Operation": {"Scan", "Install"},
    "SnapshotId": None,
    "InstallOverrideList": None,
    "BaselineOverride": None,
    "AssociationId": None,
    "RebootOption": {"RebootIfNeeded", "NoReboot"},
}
OTHER_PLUGINS = {
    "AWS-RunShellScript": "aws:runShellScript",
    "AWS-RunPowerShellScript": "aws:runPowerShellScript",
}

_SSM_MODEL = get_session().get_service_model("ssm")


class SsmError(ServiceException):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def _validation(value: Any, member: str, constraint: str) -> SsmError:
    # The message format AWS uses for its model constraint checks.
    return SsmError(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to "
        f"satisfy constraint: {constraint}",
    )


def _iso(ts: datetime | None) -> str:
    if ts is None:
        return ""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------
# Request helpers: limits come from the botocore model so they match AWS.


def _member_limits(op: str, member: str) -> tuple[int, int]:
    meta = _SSM_MODEL.operation_model(op).input_shape.members[member].metadata
    return int(meta.get("min", 0)), int(meta.get("max", 10**9))


def _max_results(r: Any, op: str) -> int:
    low, high = _member_limits(op, "MaxResults")
    value = r._get_param("MaxResults")
    if value is None:
        return high
    value = int(value)
    if value < low:
        raise _validation(value, "maxResults", f"Member must have value greater than or equal to {low}")
    if value > high:
        raise _validation(value, "maxResults", f"Member must have value less than or equal to {high}")
    return value


def _id_list(r: Any, op: str, member: str = "InstanceIds") -> list[str]:
    ids = r._get_param(member) or []
    low, high = _member_limits(op, member)
    camel = member[0].lower() + member[1:]
    if len(ids) > high:
        raise _validation(ids, camel, f"Member must have length less than or equal to {high}")
    if ids and len(ids) < low:
        raise _validation(ids, camel, f"Member must have length greater than or equal to {low}")
    return list(dict.fromkeys(ids))  # de-duplicated, order kept


def _paginate(r: Any, op: str, items: list[Any], key: Callable[[Any], Any]) -> tuple[list[Any], str | None]:
    """Keyset pagination: the token names the sort key of the last item returned, so
    items added or removed between pages are neither repeated nor skipped."""
    limit = _max_results(r, op)
    items = sorted(items, key=key)
    token = r._get_param("NextToken")
    if token:
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
            items = [i for i in items if tuple(key(i)) > after]
        except (ValueError, TypeError):
            raise SsmError("InvalidNextToken", "The specified token is not valid.")
    page = items[:limit]
    next_token = None
    if len(items) > limit:
        next_token = base64.urlsafe_b64encode(json.dumps(list(key(page[-1]))).encode()).decode()
    return page, next_token


def _with_token(body: dict[str, Any], token: str | None) -> ActionResult:
    if token:
        body["NextToken"] = token
    return ActionResult(body)


# ---------------------------------------------------------------------------
# Instances


def _num_tag(tags: dict[str, str], key: str, default: float) -> float:
    try:
        return min(max(0.0, float(tags[key])), 2592000.0)
    except (KeyError, ValueError):
        return default


@dataclass
class Node:
    """A running EC2 instance as SSM sees it."""

    instance: Any
    tags: dict[str, str]

    @property
    def id(self) -> str:
        return self.instance.id

    @property
    def windows(self) -> bool:
        return (self.instance.platform or "").lower() == "windows"

    @property
    def ping(self) -> str:
        ping = self.tags.get(TAG_PING, "Online")
        return ping if ping in PING_STATUSES else "Online"

    @property
    def computer_name(self) -> str:
        if self.windows:
            return "EC2AMAZ-" + self.id[-7:].upper()
        return self.instance.private_dns_name

    def information(self, now: datetime) -> dict[str, Any]:
        last_ping = now if self.ping == "Online" else now - timedelta(minutes=15)
        return {
            "InstanceId": self.id,
            "PingStatus": self.ping,
            "LastPingDateTime": last_ping,
            "AgentVersion": AGENT_VERSION,
            "IsLatestVersion": True,
            "PlatformType": "Windows" if self.windows else "Linux",
            "PlatformName": "Microsoft Windows Server 2022 Datacenter" if self.windows else "Amazon Linux",
            "PlatformVersion": "10.0.20348" if self.windows else "2023",
            "ResourceType": "EC2Instance",
            "IPAddress": self.instance.private_ip,
            "ComputerName": self.computer_name,
            "RegistrationDate": self.instance.launch_time,
        }


def _nodes(r: Any) -> dict[str, Node]:
    """Managed nodes of the request's account/region: running instances not tagged
    ec2patch:sim:managed=false."""
    ec2 = ec2_backends[r.current_account][r.region]
    nodes = {}
    for instance in ec2.all_running_instances():
        tags = dict(ec2.tags.get(instance.id, {}))
        if tags.get(TAG_MANAGED, "true").lower() != "false":
            nodes[instance.id] = Node(instance, tags)
    return nodes


# ---------------------------------------------------------------------------
# Commands


@dataclass
class Invocation:
    instance_id: str
    computer_name: str
    plugin: str
    start: datetime
    end: datetime
    outcome: str  # a key of OUTCOMES, or "undeliverable"
    failed_patches: int
    pending_reboot: int
    cancelled_at: datetime | None = None

    def state(self, now: datetime) -> tuple[str, str, int]:
        """(Status, StatusDetails, ResponseCode) at `now`."""
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return "Cancelled", "Cancelled", -1
        if now < self.start:
            return "Pending", "Pending", -1
        if now < self.end:
            if self.outcome == "undeliverable":
                return "Pending", "Pending", -1
            return "InProgress", "InProgress", -1
        if self.outcome == "undeliverable":
            return "TimedOut", "DeliveryTimedOut", -1
        return OUTCOMES[self.outcome]

    def started_at(self, now: datetime) -> datetime | None:
        """When the agent started running it (None: not delivered/started yet)."""
        if self.outcome == "undeliverable" or now < self.start:
            return None
        if self.cancelled_at is not None and self.cancelled_at <= self.start:
            return None
        return self.start

    def finished_at(self, now: datetime) -> datetime | None:
        if self.cancelled_at is not None and now >= self.cancelled_at:
            return self.cancelled_at
        return self.end if now >= self.end else None


@dataclass
class Command:
    seq: int
    command_id: str
    requested: datetime
    document_name: str
    document_version: str
    comment: str
    parameters: dict[str, list[str]]
    instance_ids: list[str]
    targets: list[dict[str, Any]]
    max_concurrency: str
    max_errors: str
    timeout_seconds: int
    extra: dict[str, Any]  # output S3, CloudWatch, notification, service role
    invocations: list[Invocation] = field(default_factory=list)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.parameters.get(name) or []
        return values[0] if values else default

    def counts(self, now: datetime) -> dict[str, int]:
        states = [inv.state(now) for inv in self.invocations]
        return {
            "TargetCount": len(states),
            "CompletedCount": sum(s in TERMINAL for s, _, _ in states),
            "ErrorCount": sum(s in ("Failed", "TimedOut") and d != "DeliveryTimedOut" for s, d, _ in states),
            "DeliveryTimedOutCount": sum(d == "DeliveryTimedOut" for _, d, _ in states),
        }

    def status(self, now: datetime) -> tuple[str, str]:
        states = [inv.state(now) for inv in self.invocations]
        if not states:
            return "Success", "No Instances In Tag" if self.targets else "Success"
        if all(s == "Pending" for s, _, _ in states):
            return "Pending", "Pending"
        if any(s not in TERMINAL for s, _, _ in states):
            return "InProgress", "InProgress"
        if all(s == "Success" for s, _, _ in states):
            return "Success", "Success"
        errors = [d for s, d, _ in states if s in ("Failed", "TimedOut")]
        if not errors:
            return "Cancelled", "Cancelled"
        if len(errors) <= _allowed(self.max_errors, len(states), default=0):
            return "Failed", "Incomplete"
        if all(d == "DeliveryTimedOut" for d in errors):
            return "TimedOut", "Delivery Timed Out"
        if all(d == "ExecutionTimedOut" for d in errors):
            return "TimedOut", "Execution Timed Out"
        return "Failed", "Failed"

    def describe(self, now: datetime) -> dict[str, Any]:
        status, details = self.status(now)
        return {
            "CommandId": self.command_id,
            "DocumentName": self.document_name,
            "DocumentVersion": self.document_version,
            "Comment": self.comment,
            "ExpiresAfter": self.requested + timedelta(seconds=self.timeout_seconds),
            "Parameters": self.parameters,
            "InstanceIds": self.instance_ids,
            "Targets": self.targets,
            "RequestedDateTime": self.requested,
            "Status": status,
            "StatusDetails": details,
            "MaxConcurrency": self.max_concurrency,
            "MaxErrors": self.max_errors,
            "TimeoutSeconds": self.timeout_seconds,
            **self.counts(now),
            **self.extra,
        }

    def output(self, inv: Invocation, now: datetime) -> tuple[str, str]:
        """Short simulated stdout/stderr of an invocation at `now`."""
        status, details, _ = inv.state(now)
        what = f"{inv.plugin} {self.param('Operation', 'Scan')}" if self.document_name == PATCH_DOC else inv.plugin
        if status == "Success":
            extra = f", {inv.failed_patches} patch(es) failed" if self.document_name == PATCH_DOC else ""
            return f"[simulated] {what} on {inv.instance_id} succeeded{extra}.", ""
        if status == "Failed":
            return f"[simulated] {what} on {inv.instance_id} started.", (
                f"[simulated] {what} failed ({TAG_OUTCOME}={inv.outcome}); exit code 1."
            )
        if status == "TimedOut" and details == "ExecutionTimedOut":
            return f"[simulated] {what} on {inv.instance_id} started.", "[simulated] execution timed out."
        return "", ""


def _allowed(spec: str, total: int, default: int) -> int:
    """Value of a MaxConcurrency/MaxErrors string ("10" or "25%")."""
    spec = (spec or "").strip()
    try:
        if spec.endswith("%"):
            return int(total * float(spec[:-1]) / 100)
        return int(spec)
    except ValueError:
        return default


@dataclass
class SimState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    commands: list[Command] = field(default_factory=list)


def _state(r: Any) -> SimState:
    # Kept on moto's SSM backend of the account/region, so moto's reset clears it.
    return r.ssm_backend.__dict__.setdefault("_ec2patch_sim", SimState())


def _commands(r: Any) -> list[Command]:
    state = _state(r)
    with state.lock:
        return list(state.commands)


def _command(r: Any, command_id: str | None) -> Command:
    for command in _commands(r):
        if command.command_id == command_id:
            return command
    raise SsmError("InvalidCommandId", "Invalid command id.")


def _plugin(document_name: str, windows: bool) -> str:
    if document_name == PATCH_DOC:
        return "PatchWindows" if windows else "PatchLinux"
    return OTHER_PLUGINS.get(document_name, document_name)


def _check_document(r: Any, name: str | None, parameters: dict[str, list[str]]) -> None:
    if not name:
        raise _validation(name, "documentName", "Member must not be null")
    if name == PATCH_DOC:
        for key, values in parameters.items():
            if key not in PATCH_DOC_PARAMS:
                raise SsmError("InvalidParameters", f"Parameter \"{key}\" is not a parameter of {PATCH_DOC}.")
            allowed = PATCH_DOC_PARAMS[key]
            if allowed and any(v not in allowed for v in values):
                raise SsmError("InvalidParameters", f"Parameter \"{key}\" has value {values}, allowed: {sorted(allowed)}.")
        if not parameters.get("Operation"):
            raise SsmError("InvalidParameters", "Parameters required: Operation.")
    elif not name.startswith("AWS-") and name not in r.ssm_backend._documents:
        raise SsmError("InvalidDocument", f"Document {name} does not exist in your account.")


def _resolve_targets(targets: list[dict[str, Any]], nodes: dict[str, Node]) -> list[str]:
    chosen = [n for n in nodes.values() if n.ping != "Inactive"]
    for target in targets:
        key, values = target.get("Key", ""), target.get("Values") or []
        if key == "InstanceIds":
            chosen = [n for n in chosen if n.id in values]
        elif key.startswith("tag:"):
            chosen = [n for n in chosen if n.tags.get(key[4:]) in values]
        elif key == "tag-key":
            chosen = [n for n in chosen if any(v in n.tags for v in values)]
        else:
            raise SsmError("InvalidParameters", f"Target key {key} is not supported by the simulator.")
    return sorted(n.id for n in chosen)


def send_command(r: Any) -> ActionResult:
    op = "SendCommand"
    instance_ids = _id_list(r, op)
    targets = r._get_param("Targets") or []
    if bool(instance_ids) == bool(targets):
        raise SsmError("InvalidParameters", "Specify exactly one of InstanceIds or Targets.")
    document_name = r._get_param("DocumentName")
    parameters = r._get_param("Parameters") or {}
    _check_document(r, document_name, parameters)
    timeout = int(r._get_param("TimeoutSeconds") or 3600)
    if not 30 <= timeout <= 2592000:
        raise _validation(timeout, "timeoutSeconds", "Member must have value between 30 and 2592000")

    nodes = _nodes(r)
    if instance_ids:
        bad = [i for i in instance_ids if i not in nodes or nodes[i].ping == "Inactive"]
        if bad:
            raise SsmError(
                "InvalidInstanceId",
                f"Instances [[{', '.join(bad)}]] not in a valid state for account {r.current_account}",
            )
        chosen = instance_ids
    else:
        chosen = _resolve_targets(targets, nodes)

    now = utcnow()
    max_concurrency = r._get_param("MaxConcurrency") or "50"
    command = Command(
        seq=0,
        command_id=str(uuid.uuid4()),
        requested=now,
        document_name=document_name,
        document_version=r._get_param("DocumentVersion") or "$DEFAULT",
        comment=r._get_param("Comment") or "",
        parameters=parameters,
        instance_ids=instance_ids,
        targets=targets,
        max_concurrency=max_concurrency,
        max_errors=r._get_param("MaxErrors") or "0",
        timeout_seconds=timeout,
        extra={
            k: v
            for k in ("OutputS3Region", "OutputS3BucketName", "OutputS3KeyPrefix",
                      "NotificationConfig", "CloudWatchOutputConfig", "AlarmConfiguration")
            if (v := r._get_param(k)) is not None
        },
    )
    if r._get_param("ServiceRoleArn"):
        command.extra["ServiceRole"] = r._get_param("ServiceRoleArn")

    # At most MaxConcurrency invocations run at once: each starts when a slot frees.
    slots = max(1, _allowed(max_concurrency, len(chosen), default=50))
    running: list[datetime] = []
    for instance_id in chosen:
        node = nodes[instance_id]
        start = now if len(running) < slots else heapq.heappop(running)
        end = start + timedelta(seconds=_num_tag(node.tags, TAG_SECONDS, 2.0))
        heapq.heappush(running, end)
        outcome = node.tags.get(TAG_OUTCOME, "success")
        command.invocations.append(
            Invocation(
                instance_id=instance_id,
                computer_name=node.computer_name,
                plugin=_plugin(document_name, node.windows),
                start=start,
                end=end,
                outcome="undeliverable" if node.ping != "Online" else outcome if outcome in OUTCOMES else "failed",
                failed_patches=int(_num_tag(node.tags, TAG_FAILED, 0)),
                pending_reboot=int(_num_tag(node.tags, TAG_PENDING_REBOOT, 0)),
            )
        )

    state = _state(r)
    with state.lock:
        command.seq = len(state.commands)
        state.commands.append(command)
    response = command.describe(now)
    response.update(Status="Pending", StatusDetails="Pending", CompletedCount=0, ErrorCount=0, DeliveryTimedOutCount=0)
    return ActionResult({"Command": response})


def _time_filter(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)


def _matches_filters(filters: list[dict[str, str]], document_name: str, requested: datetime, status: str) -> bool:
    for f in filters:
        key, value = f.get("key"), f.get("value", "")
        if key == "DocumentName" and document_name != value:
            return False
        if key == "Status" and status != value:
            return False
        if key == "InvokedAfter" and requested < _time_filter(value):
            return False
        if key == "InvokedBefore" and requested > _time_filter(value):
            return False
        if key == "ExecutionStage" and (value == "Complete") != (status in TERMINAL):
            return False
        if key not in ("DocumentName", "Status", "InvokedAfter", "InvokedBefore", "ExecutionStage"):
            raise SsmError("InvalidFilterKey", f"Filter key {key} is not valid.")
    return True


def list_commands(r: Any) -> ActionResult:
    now = utcnow()
    command_id, instance_id = r._get_param("CommandId"), r._get_param("InstanceId")
    commands = [_command(r, command_id)] if command_id else _commands(r)
    if instance_id:
        commands = [c for c in commands if any(i.instance_id == instance_id for i in c.invocations)]
    filters = r._get_param("Filters") or []
    rows = [c.describe(now) for c in commands]
    rows = [row for row in rows
            if _matches_filters(filters, row["DocumentName"], row["RequestedDateTime"], row["Status"])]
    seq = {c.command_id: c.seq for c in commands}
    page, token = _paginate(r, "ListCommands", rows, key=lambda row: (-seq[row["CommandId"]],))
    return _with_token({"Commands": page}, token)


def _invocation_row(command: Command, inv: Invocation, now: datetime, details: bool) -> dict[str, Any]:
    status, status_details, code = inv.state(now)
    row = {
        "CommandId": command.command_id,
        "InstanceId": inv.instance_id,
        "InstanceName": inv.computer_name,
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": command.document_version,
        "RequestedDateTime": command.requested,
        "Status": status,
        "StatusDetails": status_details,
        "TraceOutput": "",
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "CommandPlugins": [],
        "ServiceRole": command.extra.get("ServiceRole", ""),
        "NotificationConfig": command.extra.get("NotificationConfig"),
        "CloudWatchOutputConfig": command.extra.get("CloudWatchOutputConfig"),
    }
    if details:
        stdout, stderr = command.output(inv, now)
        row["CommandPlugins"] = [{
            "Name": inv.plugin,
            "Status": status,
            "StatusDetails": status_details,
            "ResponseCode": code,
            "ResponseStartDateTime": inv.started_at(now),
            "ResponseFinishDateTime": inv.finished_at(now),
            "Output": (stdout + ("\n----------ERROR-------\n" + stderr if stderr else ""))[:2500],
            "StandardOutputUrl": "",
            "StandardErrorUrl": "",
            "OutputS3Region": command.extra.get("OutputS3Region", ""),
            "OutputS3BucketName": command.extra.get("OutputS3BucketName", ""),
            "OutputS3KeyPrefix": command.extra.get("OutputS3KeyPrefix", ""),
        }]
    return row



def list_command_invocations(r: Any) -> ActionResult:
    now = utcnow()
    command_id, instance_id = r._get_param("CommandId"), r._get_param("InstanceId")
    commands = [_command(r, command_id)] if command_id else _commands(r)
    details = bool(r._get_param("Details"))
    filters = r._get_param("Filters") or []
    rows = []
    for command in commands:
        for inv in command.invocations:
            if instance_id and inv.instance_id != instance_id:
                continue
            row = _invocation_row(command, inv, now, details)
            if _matches_filters(filters, command.document_name, command.requested, row["Status"]):
                rows.append((command.seq, row))
    page, token = _paginate(r, "ListCommandInvocations", rows,
                            key=lambda item: (-item[0], item[1]["InstanceId"]))
    return _with_token({"CommandInvocations": [row for _, row in page]}, token)


def get_command_invocation(r: Any) -> ActionResult:
    now = utcnow()
    command = _command(r, r._get_param("CommandId"))
    instance_id = r._get_param("InstanceId")
    inv = next((i for i in command.invocations if i.instance_id == instance_id), None)
    if inv is None:
        raise SsmError("InvocationDoesNotExist", "An invocation with the specified command ID and instance ID does not exist.")
    plugin = r._get_param("PluginName")
    if plugin and plugin != inv.plugin:
        raise SsmError("InvalidPluginName", f"Plugin {plugin} is not part of document {command.document_name}.")
    status, details, code = inv.state(now)
    finished = inv.finished_at(now)
    started = inv.started_at(now)
    elapsed = ((finished or now) - started).total_seconds() if started else 0.0
    stdout, stderr = command.output(inv, now)
    return ActionResult({
        "CommandId": command.command_id,
        "InstanceId": inv.instance_id,
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": command.document_version,
        "PluginName": inv.plugin,
        "ResponseCode": code,
        "ExecutionStartDateTime": _iso(started),
        "ExecutionElapsedTime": f"PT{elapsed:.3f}S",
        "ExecutionEndDateTime": _iso(finished),
        "Status": status,
        "StatusDetails": details,
        "StandardOutputContent": stdout,
        "StandardOutputUrl": "",
        "StandardErrorContent": stderr,
        "StandardErrorUrl": "",
        "CloudWatchOutputConfig": command.extra.get("CloudWatchOutputConfig",
                                                    {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}),
    })


def cancel_command(r: Any) -> EmptyResult:
    now = utcnow()
    command = _command(r, r._get_param("CommandId"))
    only = set(r._get_param("InstanceIds") or [])
    with _state(r).lock:
        for inv in command.invocations:
            if (not only or inv.instance_id in only) and inv.state(now)[0] not in TERMINAL:
                inv.cancelled_at = now
    return EmptyResult()


# ---------------------------------------------------------------------------
# DescribeInstanceInformation

INFO_FILTER_FIELDS = {
    "InstanceIds": "InstanceId",
    "PingStatus": "PingStatus",
    "PlatformTypes": "PlatformType",
    "ResourceType": "ResourceType",
    "AgentVersion": "AgentVersion",
}


def _info_filter(key: str, values: list[str]) -> Callable[[Node, dict[str, Any]], bool]:
    if key in INFO_FILTER_FIELDS:
        return lambda node, info: info[INFO_FILTER_FIELDS[key]] in values
    if key.startswith("tag:"):
        return lambda node, info: node.tags.get(key[4:]) in values
    if key == "tag-key":
        return lambda node, info: any(v in node.tags for v in values)
    raise SsmError("InvalidFilterKey", f"The filter key {key} is not supported by the simulator.")


def describe_instance_information(r: Any) -> ActionResult:
    now = utcnow()
    checks = [_info_filter(f["Key"], f.get("Values") or []) for f in r._get_param("Filters") or []]
    checks += [_info_filter(f["key"], f.get("valueSet") or [])
               for f in r._get_param("InstanceInformationFilterList") or []]
    rows = []
    for node in _nodes(r).values():
        info = node.information(now)
        if all(check(node, info) for check in checks):
            rows.append(info)
    page, token = _paginate(r, "DescribeInstanceInformation", rows, key=lambda row: (row["InstanceId"],))
    return _with_token({"InstanceInformationList": page}, token)


# ---------------------------------------------------------------------------
# DescribeInstancePatchStates


def _patch_state(r: Any, node: Node, commands: list[Command], now: datetime) -> dict[str, Any]:
    patch_group = node.tags.get("PatchGroup", "default")
    try:  # a registered patch group's baseline, else AWS's default for the OS and region
        baseline = r.ssm_backend.get_patch_baseline_for_patch_group(
            patch_group, "WINDOWS" if node.windows else "AMAZON_LINUX_2023"
        )[0].rsplit("/", 1)[-1]
    except KeyError:  # a region missing from moto's table of default baselines
        baseline = "pb-0000000000000000a"
    scanned = node.instance.launch_time
    state: dict[str, Any] = {
        "InstanceId": node.id,
        "PatchGroup": patch_group,
        "BaselineId": baseline,
        "InstalledCount": int(_num_tag(node.tags, TAG_INSTALLED, 40)),
        "InstalledOtherCount": 0,
        "InstalledPendingRebootCount": 0,
        "InstalledRejectedCount": 0,
        "MissingCount": int(_num_tag(node.tags, TAG_MISSING, 3)),
        "FailedCount": 0,
        "NotApplicableCount": 0,
        "UnreportedNotApplicableCount": 0,
        "OperationStartTime": scanned,
        "OperationEndTime": scanned,
        "Operation": "Scan",
        "RebootOption": "RebootIfNeeded",
    }
    # Apply every AWS-RunPatchBaseline run on this instance that has reported, in order.
    done = []
    for command in commands:
        if command.document_name != PATCH_DOC:
            continue
        for inv in command.invocations:
            status = inv.state(now)[0]
            if inv.instance_id == node.id and status in ("Success", "Failed"):
                done.append((inv.end, command, inv, status))
    for end, command, inv, status in sorted(done, key=lambda d: (d[0], d[1].seq)):
        operation = command.param("Operation", "Scan")
        reboot = command.param("RebootOption", "RebootIfNeeded")
        state.update(Operation=operation, OperationStartTime=inv.start, OperationEndTime=end, RebootOption=reboot)
        state.pop("SnapshotId", None)
        if command.param("SnapshotId"):
            state["SnapshotId"] = command.param("SnapshotId")
        if command.param("InstallOverrideList"):
            state["InstallOverrideList"] = command.param("InstallOverrideList")
        if operation != "Install":
            continue
        to_install = state["MissingCount"] + state["FailedCount"]
        if status == "Success":
            pending = inv.pending_reboot if reboot == "NoReboot" else 0
            state["InstalledCount"] += max(0, to_install - inv.failed_patches - pending)
            state["InstalledPendingRebootCount"] = pending
            state["FailedCount"] = inv.failed_patches
            state["MissingCount"] = 0
        else:
            state["FailedCount"] = max(1, inv.failed_patches)
            state["MissingCount"] = max(0, to_install - state["FailedCount"])
    return state


def describe_instance_patch_states(r: Any) -> ActionResult:
    now = utcnow()
    instance_ids = _id_list(r, "DescribeInstancePatchStates")
    if not instance_ids:
        raise _validation(instance_ids, "instanceIds", "Member must have length greater than or equal to 1")
    nodes = _nodes(r)
    commands = _commands(r)
    rows = [_patch_state(r, nodes[i], commands, now) for i in instance_ids if i in nodes]
    page, token = _paginate(r, "DescribeInstancePatchStates", rows, key=lambda row: (row["InstanceId"],))
    return _with_token({"InstancePatchStates": page}, token)


# ---------------------------------------------------------------------------
# Change Calendars: DocumentType=ChangeCalendar documents in DocumentFormat=TEXT (moto 5.2.5
# refuses that format outright) are kept in moto's own document store, and GetCalendarState
# (absent from moto) evaluates them.  The content is iCalendar (RFC 5545) as the AWS console
# writes it.  Two kinds of problem are told apart: content that is not a valid Change Calendar
# is refused by CreateDocument/UpdateDocument (InvalidDocumentContent); valid iCalendar that the
# simulation does not evaluate (time zones, recurrences, ...) is stored, as AWS would store it,
# and GetCalendarState refuses it with UnsupportedCalendarException rather than guess.

CALENDAR_TYPE = "ChangeCalendar"
CALENDAR_DEFAULTS = ("DEFAULT_OPEN", "DEFAULT_CLOSED")
# Properties that repeat, move or re-time an event: not simulated.
CALENDAR_RECURRENCE = ("RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID", "DURATION")
UTC_ZONES = ("UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z")
_ICAL_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_ICAL_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_ICAL_DATE_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(Z?)$")
_DOCUMENT_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:([a-z0-9-]+):(\d{12}):document/(.+)$")


class CalendarInvalid(Exception):
    """Not a valid Change Calendar: CreateDocument/UpdateDocument refuse it."""


@dataclass
class IcalComponent:
    name: str
    properties: list[tuple[str, dict[str, str], str]] = field(default_factory=list)  # name, params, value
    children: list["IcalComponent"] = field(default_factory=list)

    def values(self, name: str) -> list[tuple[dict[str, str], str]]:
        return [(params, value) for n, params, value in self.properties if n == name]


def _ical_property(line: str) -> tuple[str, dict[str, str], str]:
    """`NAME;PARAM=v;PARAM="quoted:v":value` -> (NAME, {PARAM: v}, value)."""
    quoted, colon = False, -1
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == ":" and not quoted:
            colon = i
            break
    if colon < 0:
        raise CalendarInvalid(f"line {line[:60]!r} has no ':'")
    name, *params = line[:colon].split(";")
    if not _ICAL_NAME.match(name):
        raise CalendarInvalid(f"line {line[:60]!r} has no valid property name")
    parsed = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or not _ICAL_NAME.match(key):
            raise CalendarInvalid(f"parameter {param!r} of {name} is not NAME=value")
        parsed[key.upper()] = value.strip('"')
    return name.upper(), parsed, line[colon + 1:]


def _ical_parse(content: Any) -> IcalComponent:
    """The one VCALENDAR of `content`: lines unfolded (CRLF or LF, continuation lines start with
    a space or tab), BEGIN/END nesting checked."""
    if not isinstance(content, str):
        raise CalendarInvalid("the content is not text")
    lines: list[str] = []
    for raw in content.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t"):
            if not lines:
                raise CalendarInvalid("the content starts with a continuation line")
            lines[-1] += raw[1:]
        elif raw.strip():
            lines.append(raw)
    stack: list[IcalComponent] = []
    calendars: list[IcalComponent] = []
    for line in lines:
        name, params, value = _ical_property(line)
        if name == "BEGIN":
            stack.append(IcalComponent(value.upper()))
        elif name == "END":
            if not stack or stack[-1].name != value.upper():
                raise CalendarInvalid(f"END:{value} does not close "
                                      f"{'BEGIN:' + stack[-1].name if stack else 'any BEGIN'}")
            done = stack.pop()
            (stack[-1].children if stack else calendars).append(done)
        elif not stack:
            raise CalendarInvalid(f"{name} is outside BEGIN:VCALENDAR ... END:VCALENDAR")
        else:
            stack[-1].properties.append((name, params, value))
    if stack:
        raise CalendarInvalid(f"BEGIN:{stack[-1].name} is never closed")
    if len(calendars) != 1 or calendars[0].name != "VCALENDAR":
        raise CalendarInvalid("the content must be exactly one BEGIN:VCALENDAR ... END:VCALENDAR")
    return calendars[0]


@dataclass
class ChangeCalendar:
    default_open: bool
    events: list[tuple[datetime, datetime]]  # [start, end), naive UTC
    unsupported: list[str]  # what GetCalendarState would have to guess

    def closed_at(self, when: datetime) -> bool:
        # DEFAULT_OPEN: closed during its events; DEFAULT_CLOSED: open during its events.
        in_event = any(start <= when < end for start, end in self.events)
        return in_event if self.default_open else not in_event


def _ical_time(prop: str, params: dict[str, str], value: str, zone: str | None,
               unsupported: list[str]) -> tuple[datetime, str] | None:
    """(naive UTC time, value type) of a DTSTART/DTEND, or None if not simulated (noted)."""
    kind = params.get("VALUE", "DATE-TIME").upper()
    others = sorted(set(params) - {"VALUE"})
    if others:  # TZID=... above all
        unsupported.append(f"{prop};{';'.join(f'{k}={params[k]}' for k in others)} "
                           "(only UTC times ...Z and VALUE=DATE are simulated)")
        return None
    try:
        if kind == "DATE":
            match = _ICAL_DATE.match(value)
            if not match:
                raise ValueError
            parsed = datetime(*map(int, match.groups()))
            if zone is not None and zone not in UTC_ZONES:
                unsupported.append(f"{prop};VALUE=DATE:{value} in X-WR-TIMEZONE {zone} "
                                   "(all-day events are simulated in UTC only)")
                return None
            return parsed, kind
        if kind != "DATE-TIME":
            raise CalendarInvalid(f"{prop} has VALUE={kind}; DATE or DATE-TIME expected")
        match = _ICAL_DATE_TIME.match(value)
        if not match:
            raise ValueError
        parsed = datetime(*map(int, match.groups()[:6]))
    except ValueError:
        raise CalendarInvalid(f"{prop} value {value!r} is not an iCalendar {kind}")
    if not match.group(7):
        unsupported.append(f"{prop}:{value} (a floating local time; only UTC times ...Z are simulated)")
        return None
    return parsed, kind


def _change_calendar(content: Any) -> ChangeCalendar:
    calendar = _ical_parse(content)
    kinds = [value.strip().upper() for _, value in calendar.values("X-CALENDAR-TYPE")]
    if len(kinds) != 1 or kinds[0] not in CALENDAR_DEFAULTS:
        raise CalendarInvalid(f"X-CALENDAR-TYPE must appear once, DEFAULT_OPEN or DEFAULT_CLOSED (found {kinds})")
    zones = [value.strip() for _, value in calendar.values("X-WR-TIMEZONE")]
    zone = zones[0] if zones else None
    unsupported: list[str] = []
    events = []
    for number, event in enumerate((c for c in calendar.children if c.name == "VEVENT"), start=1):
        what = f"VEVENT {number}"
        for prop in CALENDAR_RECURRENCE:
            if event.values(prop):
                unsupported.append(f"{what} has {prop} (recurring or duration-based events are not simulated)")
        if any(value.strip().upper() == "CANCELLED" for _, value in event.values("STATUS")):
            unsupported.append(f"{what} has STATUS:CANCELLED")
        starts, ends = event.values("DTSTART"), event.values("DTEND")
        if len(starts) != 1 or len(ends) > 1:
            raise CalendarInvalid(f"{what} must have one DTSTART and at most one DTEND")
        if not ends:
            if not event.values("DURATION"):
                unsupported.append(f"{what} has no DTEND (its implied length is not simulated)")
            continue
        start = _ical_time("DTSTART", *starts[0], zone, unsupported)
        end = _ical_time("DTEND", *ends[0], zone, unsupported)
        if start is None or end is None:
            continue
        if start[1] != end[1]:
            raise CalendarInvalid(f"{what}: DTSTART and DTEND must both be DATE or both DATE-TIME")
        if end[0] <= start[0]:
            raise CalendarInvalid(f"{what}: DTEND must be later than DTSTART")
        events.append((start[0], end[0]))
    return ChangeCalendar(kinds[0] == "DEFAULT_OPEN", events, unsupported)


def _calendar_of(r: Any, name_or_arn: str) -> ChangeCalendar:
    name = name_or_arn
    arn = _DOCUMENT_ARN.match(name_or_arn or "")
    if arn:
        region, account, name = arn.groups()
        if (region, account) != (r.region, r.current_account):
            raise SsmError("InvalidDocument", f"Document {name_or_arn} does not exist in your account: "
                                              "the simulation reads calendars of the caller's account and region only.")
    documents = r.ssm_backend._documents.get(name)
    if documents is None:
        # InvalidDocument, not InvalidDocumentType/UnsupportedCalendarException: the SSM model
        # documents it as "The specified SSM document doesn't exist", which is this case.
        raise SsmError("InvalidDocument", f"Document {name_or_arn} does not exist in your account.")
    document = documents.get_default_version()
    if document.document_type != CALENDAR_TYPE:
        raise SsmError("InvalidDocumentType",
                       f"Document {name_or_arn} is of type {document.document_type}, not {CALENDAR_TYPE}.")
    try:
        calendar = _change_calendar(document.content)
    except CalendarInvalid as ex:  # a ChangeCalendar stored as JSON/YAML, say
        raise SsmError("UnsupportedCalendarException", f"Calendar {name_or_arn}: {ex}.")
    if calendar.unsupported:
        raise SsmError("UnsupportedCalendarException",
                       f"Calendar {name_or_arn}: not simulated: {calendar.unsupported[0]}.")
    return calendar


def _iso_seconds(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # the form AWS answers with: 2020-07-30T16:18:18Z


def get_calendar_state(r: Any) -> ActionResult:
    names = r._get_param("CalendarNames") or []
    if not names:
        raise _validation(names, "calendarNames", "Member must have length greater than or equal to 1")
    at_time = r._get_param("AtTime")
    if at_time:
        try:
            at = datetime.fromisoformat(at_time.strip())
        except ValueError:
            raise SsmError("ValidationException", f"AtTime {at_time!r} is not an ISO 8601 date and time.")
        if at.tzinfo is not None:  # converted to UTC; a time without an offset is taken as UTC
            at = (at - at.utcoffset()).replace(tzinfo=None)
    else:
        at = utcnow()
    calendars = [_calendar_of(r, name) for name in names]

    def closed(when: datetime) -> bool:  # CLOSED if any calendar is CLOSED
        return any(c.closed_at(when) for c in calendars)

    closed_now = closed(at)
    # The combined state only changes at an event boundary: the next one where it differs.
    boundaries = sorted({t for c in calendars for event in c.events for t in event if t > at})
    transition = next((t for t in boundaries if closed(t) != closed_now), None)
    body = {"State": "CLOSED" if closed_now else "OPEN", "AtTime": _iso_seconds(at)}
    if transition is not None:
        body["NextTransitionTime"] = _iso_seconds(transition)
    return ActionResult(body)


def _install_calendar_documents(response_cls: type) -> None:
    """moto's CreateDocument/UpdateDocument/GetDocument take TEXT for ChangeCalendar documents;
    they are stored in moto's own document store (so Describe/List/Delete work unchanged)."""
    from moto.ssm import models
    from moto.ssm.exceptions import InvalidDocumentContent, ValidationException

    original_check_format = models._validate_document_format

    def check_format(document_format: str) -> None:
        if document_format != "TEXT":
            original_check_format(document_format)

    models._validate_document_format = check_format

    original_init = models.Document.__init__
    signature = inspect.signature(original_init)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        given = signature.bind(self, *args, **kwargs).arguments
        if given.get("document_format") != "TEXT":
            return original_init(self, *args, **kwargs)
        if given.get("document_type") != CALENDAR_TYPE:
            raise ValidationException("Invalid document format TEXT")  # moto's answer, as before
        content = given.get("content")
        if content:  # empty content: moto's own "Content is required" follows
            try:
                _change_calendar(content)
            except CalendarInvalid as ex:
                raise InvalidDocumentContent(f"The content for the document is not valid: {ex}.")
        # moto's constructor parses JSON/YAML only: build the rest of the document through it,
        # then keep the calendar text as the content (the hash is computed from it).
        given.update(content={"schemaVersion": "2.0"}, document_format="JSON")
        original_init(**given)
        self.content, self.document_format, self.content_json = content, "TEXT", None
        self.schema_version = None  # a calendar has none: left out of DescribeDocument
        self.platform_types = []

    models.Document.__init__ = init

    # A TEXT document has no JSON/YAML form: asked for one, say so instead of converting.
    original_content = models.SimpleSystemManagerBackend._get_document_content

    def document_content(document_format: str, ssm_document: Any) -> str:
        if ssm_document.document_format == "TEXT" and document_format != "TEXT":
            raise ValidationException(f"Document {ssm_document.name} is a TEXT document; "
                                      f"it cannot be returned as {document_format}.")
        return original_content(document_format, ssm_document)

    models.SimpleSystemManagerBackend._get_document_content = staticmethod(document_content)

    # moto's GetDocument defaults DocumentFormat to JSON; a calendar comes back as TEXT.
    original_get = response_cls.get_document

    def get_document(r: Any) -> ActionResult:
        if r._get_param("DocumentFormat") is None:
            documents = r.ssm_backend._documents.get(r._get_param("Name"))
            document = documents and documents.find(
                r._get_param("DocumentVersion"), r._get_param("VersionName"), strict=False)
            if document is not None and document.document_format == "TEXT":
                return ActionResult(r.ssm_backend.get_document(
                    name=r._get_param("Name"), document_version=r._get_param("DocumentVersion"),
                    version_name=r._get_param("VersionName"), document_format="TEXT"))
        return original_get(r)

    response_cls.get_document = get_document


HANDLERS = {
    "describe_instance_information": describe_instance_information,
    "send_command": send_command,
    "list_commands": list_commands,
    "list_command_invocations": list_command_invocations,
    "get_command_invocation": get_command_invocation,
    "cancel_command": cancel_command,
    "describe_instance_patch_states": describe_instance_patch_states,
    "get_calendar_state": get_calendar_state,
}


def install(response_cls: type) -> None:
    _install_calendar_documents(response_cls)
    for name, handler in HANDLERS.items():
        setattr(response_cls, name, handler)
