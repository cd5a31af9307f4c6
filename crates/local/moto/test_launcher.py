"""Tests of launcher.py: start it, then talk to it with boto3 from two accounts.

Run from the repository root:
    .venv/bin/python -m unittest discover -s crates/local/moto -p 'test_*.py'
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
HUB = "111111111111"
ACCOUNT_A = "222222222222"  # reached with STS AssumeRole from the hub
ACCOUNT_B = "333333333333"  # reached with IAM access keys created in that account
SIM = "ec2patch:sim:"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_launcher() -> tuple[subprocess.Popen, str, Any]:
    """launcher.py on a free port (no router: the interpreter calls moto itself); ready to use."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MOTO_ACCOUNT_ID"}
    env["MOTO_PORT"] = str(port)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "launcher.py"), "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=1):
                return proc, endpoint, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError("launcher did not start:\n" + log.read().decode(errors="replace")[-5000:])
            time.sleep(0.1)


class LauncherTest(unittest.TestCase):
    proc: subprocess.Popen
    endpoint: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.proc, cls.endpoint, cls.log = _start_launcher()
        cls.hub = cls._iam_keys(HUB)
        cls.acct_b = cls._iam_keys(ACCOUNT_B)
        creds = cls.client("sts", cls.hub).assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT_A}:role/ec2patch-target", RoleSessionName="test"
        )["Credentials"]
        cls.acct_a = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        cls.log.close()

    @classmethod
    def client(cls, service: str, creds: dict, region: str = "us-east-1", **config):
        return boto3.client(service, endpoint_url=cls.endpoint, region_name=region,
                            config=Config(retries={"max_attempts": 1}, **config), **creds)

    @classmethod
    def _iam_keys(cls, account: str) -> dict:
        """Keys created with the x-moto-account-id header belong to that account."""
        iam = cls.client("iam", {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "x"})
        iam.meta.events.register(
            "before-sign.iam.*", lambda request, **_: request.headers.__setitem__("x-moto-account-id", account)
        )
        iam.create_user(UserName="ec2patch-test")
        key = iam.create_access_key(UserName="ec2patch-test")["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def launch(self, creds: dict, region: str, count: int = 1, windows: bool = False, **tags: str) -> list[str]:
        ec2 = self.client("ec2", creds, region)
        images = ec2.describe_images()["Images"]
        image = next(i["ImageId"] for i in images if (i.get("Platform") == "windows") == windows)
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        reply = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
                                  **({"TagSpecifications": spec} if tags else {}))
        return [i["InstanceId"] for i in reply["Instances"]]

    def assertAwsError(self, code: str, call, *args, **kwargs) -> ClientError:
        with self.assertRaises(ClientError) as caught:
            call(*args, **kwargs)
        self.assertEqual(caught.exception.response["Error"]["Code"], code)
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        return caught.exception

    # ------------------------------------------------------------------ tests

    def test_credentials_map_to_their_accounts(self) -> None:
        self.assertEqual(self.client("sts", self.acct_a).get_caller_identity()["Account"], ACCOUNT_A)
        self.assertEqual(self.client("sts", self.acct_b).get_caller_identity()["Account"], ACCOUNT_B)

    def test_describe_instance_information(self) -> None:
        region = "eu-west-1"
        managed = set(self.launch(self.acct_a, region, 12, **{"Role": "web"}))
        unmanaged = set(self.launch(self.acct_a, region, 2, **{SIM + "managed": "false"}))
        other = set(self.launch(self.acct_b, region, 3, **{SIM + "ping": "ConnectionLost"}))
        ssm_a = self.client("ssm", self.acct_a, region)

        seen, pages, token = [], 0, None
        while True:
            reply = ssm_a.describe_instance_information(MaxResults=5, **({"NextToken": token} if token else {}))
            pages += 1
            self.assertLessEqual(len(reply["InstanceInformationList"]), 5)
            seen += [i["InstanceId"] for i in reply["InstanceInformationList"]]
            token = reply.get("NextToken")
            if not token:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), len(set(seen)))
        self.assertEqual(set(seen), managed)
        self.assertFalse(set(seen) & (unmanaged | other))

        info = ssm_a.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": sorted(managed)[:2]}])["InstanceInformationList"]
        self.assertEqual({i["InstanceId"] for i in info}, set(sorted(managed)[:2]))
        first = info[0]
        self.assertEqual((first["PingStatus"], first["PlatformType"], first["ResourceType"]),
                         ("Online", "Linux", "EC2Instance"))
        for field in ("LastPingDateTime", "AgentVersion", "IsLatestVersion", "PlatformName",
                      "PlatformVersion", "IPAddress", "ComputerName"):
            self.assertIn(field, first)
        by_tag = ssm_a.describe_instance_information(Filters=[{"Key": "tag:Role", "Values": ["web"]}])
        self.assertEqual(len(by_tag["InstanceInformationList"]), 12)
        legacy = ssm_a.describe_instance_information(
            InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": [sorted(managed)[0]]}])
        self.assertEqual(len(legacy["InstanceInformationList"]), 1)
        self.assertAwsError("ValidationException", self.client(
            "ssm", self.acct_a, region, parameter_validation=False).describe_instance_information, MaxResults=4)

        info_b = self.client("ssm", self.acct_b, region).describe_instance_information()["InstanceInformationList"]
        self.assertEqual({i["InstanceId"] for i in info_b}, other)
        self.assertEqual({i["PingStatus"] for i in info_b}, {"ConnectionLost"})

    def test_send_command_targets_and_progress(self) -> None:
        region = "eu-west-2"
        ok = self.launch(self.acct_a, region, 1, **{SIM + "patch-seconds": "1"})[0]
        bad = self.launch(self.acct_a, region, 1, **{SIM + "patch-seconds": "1", SIM + "patch-outcome": "failed"})[0]
        bystander = self.launch(self.acct_a, region, 1)[0]
        unmanaged = self.launch(self.acct_a, region, 1, **{SIM + "managed": "false"})[0]
        foreign = self.launch(self.acct_b, region, 1)[0]
        ssm = self.client("ssm", self.acct_a, region)
        args = {"DocumentName": "AWS-RunPatchBaseline", "Parameters": {"Operation": ["Scan"]}}

        command = ssm.send_command(InstanceIds=[ok, bad], Comment="two", TimeoutSeconds=600,
                                   MaxConcurrency="10", MaxErrors="0", **args)["Command"]
        self.assertEqual(command["TargetCount"], 2)
        self.assertIn(command["Status"], ("Pending", "InProgress"))
        self.assertEqual((command["Comment"], command["MaxConcurrency"], command["TimeoutSeconds"]), ("two", "10", 600))
        cid = command["CommandId"]
        invocations = ssm.list_command_invocations(CommandId=cid)["CommandInvocations"]
        self.assertEqual({i["InstanceId"] for i in invocations}, {ok, bad})
        self.assertEqual({i["Status"] for i in invocations}, {"InProgress"})
        self.assertEqual(ssm.list_commands(CommandId=cid)["Commands"][0]["Status"], "InProgress")

        for instance in (unmanaged, foreign, "i-0123456789abcdef0"):
            self.assertAwsError("InvalidInstanceId", ssm.send_command, InstanceIds=[ok, instance], **args)
        raw = self.client("ssm", self.acct_a, region, parameter_validation=False)
        self.assertAwsError("ValidationException", raw.send_command,
                            InstanceIds=[f"i-{n:017x}" for n in range(51)], **args)

        targeted = ssm.send_command(Targets=[{"Key": f"tag:{SIM}patch-outcome", "Values": ["failed"]}], **args)
        self.assertEqual(targeted["Command"]["TargetCount"], 1)
        self.assertEqual(ssm.list_command_invocations(CommandId=targeted["Command"]["CommandId"])
                         ["CommandInvocations"][0]["InstanceId"], bad)

        time.sleep(1.3)
        detailed = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]
        status = {i["InstanceId"]: i["Status"] for i in detailed}
        self.assertEqual(status, {ok: "Success", bad: "Failed"})
        plugin = next(i for i in detailed if i["InstanceId"] == bad)["CommandPlugins"][0]
        self.assertEqual((plugin["Name"], plugin["Status"], plugin["ResponseCode"]), ("PatchLinux", "Failed", 1))
        summary = ssm.list_commands(CommandId=cid)["Commands"][0]
        self.assertEqual((summary["Status"], summary["CompletedCount"], summary["ErrorCount"]), ("Failed", 2, 1))
        good = ssm.get_command_invocation(CommandId=cid, InstanceId=ok)
        self.assertEqual((good["Status"], good["ResponseCode"]), ("Success", 0))
        self.assertTrue(good["StandardOutputContent"])
        failed = ssm.get_command_invocation(CommandId=cid, InstanceId=bad)
        self.assertEqual((failed["Status"], failed["ResponseCode"]), ("Failed", 1))
        self.assertAwsError("InvocationDoesNotExist", ssm.get_command_invocation, CommandId=cid, InstanceId=bystander)
        self.assertAwsError("InvalidCommandId", ssm.list_command_invocations, CommandId="00000000-0000-0000-0000-000000000000")

        page = ssm.list_command_invocations(MaxResults=1)
        self.assertEqual(len(page["CommandInvocations"]), 1)
        rest = ssm.list_command_invocations(MaxResults=50, NextToken=page["NextToken"])["CommandInvocations"]
        self.assertEqual(len(rest), 2)  # 3 invocations in all: 2 + 1 targeted
        self.assertEqual(self.client("ssm", self.acct_b, region).list_commands()["Commands"], [])

    def test_cancel_command(self) -> None:
        region = "ap-southeast-2"
        slow = self.launch(self.acct_b, region, 2, **{SIM + "patch-seconds": "60"})
        ssm = self.client("ssm", self.acct_b, region)
        cid = ssm.send_command(InstanceIds=slow, DocumentName="AWS-RunShellScript",
                               Parameters={"commands": ["true"]})["Command"]["CommandId"]
        ssm.cancel_command(CommandId=cid)
        invocations = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]
        self.assertEqual({i["Status"] for i in invocations}, {"Cancelled"})
        self.assertEqual(invocations[0]["CommandPlugins"][0]["Name"], "aws:runShellScript")
        self.assertEqual(ssm.list_commands(CommandId=cid)["Commands"][0]["Status"], "Cancelled")

    def test_a_failed_transaction_changes_nothing_and_a_large_table_is_no_obstacle(self) -> None:
        ddb = self.client("dynamodb", self.hub)
        ddb.create_table(
            TableName="tx", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
        )
        item = lambda pk, **extra: {"pk": {"S": pk}, "sk": {"S": "X"}, **extra}  # noqa: E731
        for start in range(0, 2000, 25):  # a table of some size: moto used to copy it per action
            ddb.batch_write_item(RequestItems={"tx": [
                {"PutRequest": {"Item": item(f"filler{n}")}} for n in range(start, start + 25)]})
        ddb.put_item(TableName="tx", Item=item("kept", v={"S": "before"}))
        ddb.put_item(TableName="tx", Item=item("taken", owner={"S": "other"}))
        guarded = {"ConditionExpression": "attribute_not_exists(pk)", "TableName": "tx"}
        error = self.assertAwsError(
            "TransactionCanceledException", ddb.transact_write_items, TransactItems=[
                {"Put": {"TableName": "tx", "Item": item("new")}},
                {"Put": {"TableName": "tx", "Item": item("kept", v={"S": "after"})}},
                {"Delete": {"TableName": "tx", "Key": item("filler7")}},
                {"Put": {**guarded, "Item": item("taken", owner={"S": "me"}),
                         "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            ])
        reasons = error.response["CancellationReasons"]
        self.assertEqual([r["Code"] for r in reasons], ["None", "None", "None", "ConditionalCheckFailed"])
        self.assertEqual(reasons[3]["Item"]["owner"], {"S": "other"})
        get = lambda pk: ddb.get_item(TableName="tx", Key=item(pk)).get("Item")  # noqa: E731
        self.assertIsNone(get("new"), "the put of a cancelled transaction is undone")
        self.assertEqual(get("kept")["v"], {"S": "before"}, "an overwritten item is restored")
        self.assertIsNotNone(get("filler7"), "a deleted item is restored")
        self.assertEqual(get("taken")["owner"], {"S": "other"})
        # 100 actions on the 2000-item table: done, each item written.
        ddb.transact_write_items(TransactItems=[
            {"Put": {**guarded, "Item": item(f"lease{n}")}} for n in range(100)])
        self.assertIsNotNone(get("lease99"))
        self.assertEqual(ddb.scan(TableName="tx", Select="COUNT")["Count"], 2000 + 2 + 100)

    def test_create_snapshots_copies_volume_tags(self) -> None:
        region = "ap-southeast-2"
        ec2 = self.client("ec2", self.acct_a, region)
        [instance] = self.launch(self.acct_a, region)
        root = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
        root_volume = root["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        ec2.create_tags(Resources=[root_volume], Tags=[{"Key": "CostCenter", "Value": "42"},
                                                       {"Key": "Owner", "Value": "volume"}])
        spec = [{"ResourceType": "snapshot", "Tags": [{"Key": "Owner", "Value": "ec2patch"}]}]

        def tags_of(reply: dict) -> dict:
            [snapshot] = reply["Snapshots"]
            described = ec2.describe_snapshots(SnapshotIds=[snapshot["SnapshotId"]])["Snapshots"][0]
            return {t["Key"]: t["Value"] for t in described.get("Tags", [])}

        copied = tags_of(ec2.create_snapshots(InstanceSpecification={"InstanceId": instance},
                                              CopyTagsFromSource="volume", TagSpecifications=spec))
        # The volume's tags, with the request's own winning on the same key.
        self.assertEqual(copied, {"CostCenter": "42", "Owner": "ec2patch"})
        plain = tags_of(ec2.create_snapshots(InstanceSpecification={"InstanceId": instance}, TagSpecifications=spec))
        self.assertEqual(plain, {"Owner": "ec2patch"})

    def test_patch_states_before_and_after_install(self) -> None:
        region = "us-west-2"
        ssm = self.client("ssm", self.acct_b, region)
        good = self.launch(self.acct_b, region, 1, **{
            SIM + "patch-seconds": "1", SIM + "missing": "5", SIM + "installed": "10",
            SIM + "failed-patches": "1", "PatchGroup": "web"})[0]
        broken = self.launch(self.acct_b, region, 1, windows=True, **{
            SIM + "patch-seconds": "1", SIM + "patch-outcome": "failed"})[0]

        before = {s["InstanceId"]: s for s in
                  ssm.describe_instance_patch_states(InstanceIds=[good, broken])["InstancePatchStates"]}
        self.assertEqual(
            [before[good][k] for k in ("MissingCount", "InstalledCount", "FailedCount", "Operation", "PatchGroup")],
            [5, 10, 0, "Scan", "web"])
        self.assertEqual([before[broken][k] for k in ("MissingCount", "InstalledCount", "PatchGroup")],
                         [3, 40, "default"])
        self.assertTrue(before[good]["BaselineId"].startswith("pb-"))

        cid = ssm.send_command(InstanceIds=[good, broken], DocumentName="AWS-RunPatchBaseline",
                               Parameters={"Operation": ["Install"], "SnapshotId": ["snap-run-1"]}
                               )["Command"]["CommandId"]
        during = ssm.describe_instance_patch_states(InstanceIds=[good])["InstancePatchStates"][0]
        self.assertEqual((during["MissingCount"], during["Operation"]), (5, "Scan"))
        time.sleep(1.3)
        self.assertEqual(ssm.get_command_invocation(CommandId=cid, InstanceId=broken)["PluginName"], "PatchWindows")
        after = {s["InstanceId"]: s for s in
                 ssm.describe_instance_patch_states(InstanceIds=[good, broken])["InstancePatchStates"]}
        self.assertEqual(
            [after[good][k] for k in ("MissingCount", "InstalledCount", "FailedCount", "Operation", "SnapshotId")],
            [0, 14, 1, "Install", "snap-run-1"])
        self.assertGreaterEqual(after[broken]["FailedCount"], 1)
        self.assertEqual(after[broken]["Operation"], "Install")

        ssm.send_command(InstanceIds=[good], DocumentName="AWS-RunPatchBaseline",
                         Parameters={"Operation": ["Scan"]})
        time.sleep(1.3)
        scanned = ssm.describe_instance_patch_states(InstanceIds=[good])["InstancePatchStates"][0]
        self.assertEqual([scanned[k] for k in ("MissingCount", "InstalledCount", "FailedCount", "Operation")],
                         [0, 14, 1, "Scan"])
        self.assertGreater(scanned["OperationEndTime"], after[good]["OperationEndTime"])
        self.assertAwsError("InvalidParameters", ssm.send_command, InstanceIds=[good],
                            DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Patch"]})

    # ------------------------------------------------------------------ Change Calendars

    def _calendar(self, ssm, name: str, kind: str, *events: tuple[str, str]) -> None:
        """A Change Calendar document as the AWS console writes it (CRLF, a VTODO placeholder);
        each event is a (DTSTART, DTEND) pair of property lines."""
        lines = ["BEGIN:VCALENDAR", "PRODID:-//AWS//Change Calendar 1.0//EN", "VERSION:2.0",
                 f"X-CALENDAR-TYPE:{kind}", "X-WR-CALDESC:ec2patch test", "BEGIN:VTODO",
                 "DTSTAMP:20200320T004207Z", "UID:3b5af39a-d0b3-4049-a839-d7bb8af01f92",
                 "SUMMARY:Add events to this calendar.", "END:VTODO"]
        for n, (start, end) in enumerate(events):
            lines += ["BEGIN:VEVENT", "DTSTAMP:20260101T000000Z", f"UID:{name}-{n}", start, end,
                      f"SUMMARY:freeze {n}", "END:VEVENT"]
        ssm.create_document(Name=name, Content="\r\n".join(lines + ["END:VCALENDAR", ""]),
                            DocumentType="ChangeCalendar", DocumentFormat="TEXT")

    @staticmethod
    def _hours_from_now(hours: float) -> tuple[str, str]:
        """(iCalendar UTC form, GetCalendarState form) of now + hours, whole seconds."""
        when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=hours)
        return when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def test_change_calendar_documents(self) -> None:
        ssm = self.client("ssm", self.hub, "eu-central-1")
        self._calendar(ssm, "freeze-docs", "DEFAULT_OPEN",
                       ("DTSTART:20261205T000000Z", "DTEND:20261206T000000Z"))
        described = ssm.describe_document(Name="freeze-docs")["Document"]
        self.assertEqual((described["DocumentType"], described["DocumentFormat"], described["Owner"]),
                         ("ChangeCalendar", "TEXT", HUB))
        document = ssm.get_document(Name="freeze-docs")
        self.assertEqual(document["DocumentFormat"], "TEXT")
        self.assertTrue(document["Content"].startswith("BEGIN:VCALENDAR\r\n"))
        self.assertIn("X-CALENDAR-TYPE:DEFAULT_OPEN", document["Content"])
        self.assertEqual(ssm.get_document(Name="freeze-docs", DocumentFormat="TEXT")["Content"], document["Content"])
        listed = ssm.list_documents(Filters=[{"Key": "DocumentType", "Values": ["ChangeCalendar"]}])
        self.assertIn("freeze-docs", [d["Name"] for d in listed["DocumentIdentifiers"]])
        # Stored per account and region, like every document.
        self.assertAwsError("InvalidDocument", self.client("ssm", self.acct_b, "eu-central-1").get_document,
                            Name="freeze-docs")

        updated = ssm.update_document(Name="freeze-docs", DocumentVersion="$LATEST", DocumentFormat="TEXT",
                                      Content=document["Content"].replace("DEFAULT_OPEN", "DEFAULT_CLOSED"))
        self.assertEqual(updated["DocumentDescription"]["DocumentVersion"], "2")
        self.assertIn("DEFAULT_CLOSED", ssm.get_document(Name="freeze-docs", DocumentVersion="2")["Content"])

        for broken in ("not a calendar",
                       "BEGIN:VCALENDAR\r\nX-CALENDAR-TYPE:DEFAULT_MAYBE\r\nEND:VCALENDAR\r\n",
                       "BEGIN:VCALENDAR\r\nX-CALENDAR-TYPE:DEFAULT_OPEN\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n",
                       "BEGIN:VCALENDAR\r\nX-CALENDAR-TYPE:DEFAULT_OPEN\r\nBEGIN:VEVENT\r\nDTSTART:20261206T000000Z\r\n"
                       "DTEND:20261205T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"):
            self.assertAwsError("InvalidDocumentContent", ssm.create_document, Name="freeze-broken", Content=broken,
                                DocumentType="ChangeCalendar", DocumentFormat="TEXT")
        self.assertAwsError("ValidationException", ssm.create_document, Name="freeze-command", Content="echo",
                            DocumentType="Command", DocumentFormat="TEXT")

        ssm.delete_document(Name="freeze-docs")
        self.assertAwsError("InvalidDocument", ssm.get_document, Name="freeze-docs")
        self.assertAwsError("InvalidDocument", ssm.get_calendar_state, CalendarNames=["freeze-docs"])

    def test_calendar_state_of_a_default_open_calendar(self) -> None:
        region = "eu-central-1"
        ssm = self.client("ssm", self.hub, region)
        (start, start_iso), (end, end_iso) = self._hours_from_now(-1), self._hours_from_now(2)
        self._calendar(ssm, "freeze-now", "DEFAULT_OPEN", (f"DTSTART:{start}", f"DTEND:{end}"))

        state = ssm.get_calendar_state(CalendarNames=["freeze-now"])
        self.assertEqual((state["State"], state["NextTransitionTime"]), ("CLOSED", end_iso))
        at = datetime.strptime(state["AtTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        self.assertLess(abs((at - datetime.now(timezone.utc)).total_seconds()), 60, state)

        before = ssm.get_calendar_state(CalendarNames=["freeze-now"], AtTime=self._hours_from_now(-3)[1])
        self.assertEqual((before["State"], before["NextTransitionTime"]), ("OPEN", start_iso))
        after = ssm.get_calendar_state(CalendarNames=["freeze-now"], AtTime=end_iso)  # DTEND is exclusive
        self.assertEqual((after["State"], after["AtTime"]), ("OPEN", end_iso))
        self.assertNotIn("NextTransitionTime", after)

        arn = f"arn:aws:ssm:{region}:{HUB}:document/freeze-now"
        self.assertEqual(ssm.get_calendar_state(CalendarNames=[arn])["State"], "CLOSED")

        # All-day events (VALUE=DATE) are whole UTC days; AtTime may carry an offset.
        self._calendar(ssm, "freeze-days", "DEFAULT_OPEN", ("DTSTART;VALUE=DATE:20301224", "DTEND;VALUE=DATE:20301227"))
        inside = ssm.get_calendar_state(CalendarNames=["freeze-days"], AtTime="2030-12-26T01:30:00+0200")
        self.assertEqual((inside["State"], inside["AtTime"], inside["NextTransitionTime"]),
                         ("CLOSED", "2030-12-25T23:30:00Z", "2030-12-27T00:00:00Z"))

    def test_calendar_state_of_a_default_closed_calendar(self) -> None:
        ssm = self.client("ssm", self.hub, "eu-central-1")
        (start, start_iso), (end, end_iso) = self._hours_from_now(1), self._hours_from_now(3)
        self._calendar(ssm, "window-later", "DEFAULT_CLOSED", (f"DTSTART:{start}", f"DTEND:{end}"))
        outside = ssm.get_calendar_state(CalendarNames=["window-later"])
        self.assertEqual((outside["State"], outside["NextTransitionTime"]), ("CLOSED", start_iso))
        inside = ssm.get_calendar_state(CalendarNames=["window-later"], AtTime=self._hours_from_now(2)[1])
        self.assertEqual((inside["State"], inside["NextTransitionTime"]), ("OPEN", end_iso))
        last = ssm.get_calendar_state(CalendarNames=["window-later"], AtTime=end_iso)
        self.assertEqual(last["State"], "CLOSED")
        self.assertNotIn("NextTransitionTime", last)

    def test_calendar_state_of_several_calendars(self) -> None:
        ssm = self.client("ssm", self.hub, "eu-central-1")
        hours = {h: self._hours_from_now(h) for h in (1, 2, 3, 4, 5)}
        # Freeze A 1h..3h, freeze B 2h..4h (overlapping); a window calendar open 0h..5h.
        self._calendar(ssm, "freeze-a", "DEFAULT_OPEN", (f"DTSTART:{hours[1][0]}", f"DTEND:{hours[3][0]}"))
        self._calendar(ssm, "freeze-b", "DEFAULT_OPEN", (f"DTSTART:{hours[2][0]}", f"DTEND:{hours[4][0]}"))
        self._calendar(ssm, "window-now", "DEFAULT_CLOSED",
                       (f"DTSTART:{self._hours_from_now(-1)[0]}", f"DTEND:{hours[5][0]}"))
        both = ["freeze-a", "freeze-b"]
        now = ssm.get_calendar_state(CalendarNames=both)
        self.assertEqual((now["State"], now["NextTransitionTime"]), ("OPEN", hours[1][1]))
        # Closed from A's start until B's end: A ending at 3h changes nothing.
        frozen = ssm.get_calendar_state(CalendarNames=both, AtTime=hours[1][1])
        self.assertEqual((frozen["State"], frozen["NextTransitionTime"]), ("CLOSED", hours[4][1]))
        self.assertEqual(ssm.get_calendar_state(CalendarNames=["freeze-a"], AtTime=hours[3][1])["State"], "OPEN")
        # One CLOSED calendar closes the lot; the window's own end is the next change after B's.
        with_window = ssm.get_calendar_state(CalendarNames=["window-now", *both], AtTime=hours[3][1])
        self.assertEqual((with_window["State"], with_window["NextTransitionTime"]), ("CLOSED", hours[4][1]))
        later = ssm.get_calendar_state(CalendarNames=["window-now", *both], AtTime=hours[4][1])
        self.assertEqual((later["State"], later["NextTransitionTime"]), ("OPEN", hours[5][1]))

    def test_calendar_state_errors(self) -> None:
        ssm = self.client("ssm", self.hub, "eu-central-1")
        self._calendar(ssm, "freeze-known", "DEFAULT_OPEN")
        self.assertEqual(ssm.get_calendar_state(CalendarNames=["freeze-known"])["State"], "OPEN")
        self.assertAwsError("InvalidDocument", ssm.get_calendar_state, CalendarNames=["freeze-known", "no-such-calendar"])
        self.assertAwsError("InvalidDocument", ssm.get_calendar_state,
                            CalendarNames=[f"arn:aws:ssm:eu-central-1:{ACCOUNT_B}:document/freeze-known"])
        ssm.create_document(Name="not-a-calendar", DocumentType="Command",
                            Content=json.dumps({"schemaVersion": "2.2", "mainSteps": []}))
        self.assertAwsError("InvalidDocumentType", ssm.get_calendar_state, CalendarNames=["not-a-calendar"])
        self.assertAwsError("ValidationException", ssm.get_calendar_state,
                            CalendarNames=["freeze-known"], AtTime="next tuesday")
        # Valid iCalendar the simulation does not evaluate is stored, then refused, not guessed.
        for name, event in (("freeze-tz", ("DTSTART;TZID=Europe/Paris:20301205T000000",
                                           "DTEND;TZID=Europe/Paris:20301206T000000")),
                            ("freeze-weekly", ("DTSTART:20301205T000000Z", "DTEND:20301206T000000Z\r\nRRULE:FREQ=WEEKLY"))):
            self._calendar(ssm, name, "DEFAULT_OPEN", event)
            error = self.assertAwsError("UnsupportedCalendarException", ssm.get_calendar_state, CalendarNames=[name])
            self.assertIn("TZID" if name == "freeze-tz" else "RRULE", error.response["Error"]["Message"])

    def test_step_functions(self) -> None:
        sfn = self.client("stepfunctions", self.acct_a)
        definition = {"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
        self.assertEqual(sfn.validate_state_machine_definition(definition=json.dumps(definition))["result"], "OK")
        for broken in ("{not json", json.dumps({"States": {}})):
            reply = sfn.validate_state_machine_definition(definition=broken)
            self.assertEqual(reply["result"], "FAIL")
            self.assertEqual(reply["diagnostics"][0]["severity"], "ERROR")

        arn = sfn.create_state_machine(name="pass-twice", definition=json.dumps(definition),
                                       roleArn=f"arn:aws:iam::{ACCOUNT_A}:role/sfn")["stateMachineArn"]
        self.assertEqual(sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"], [])
        jsonata = {"QueryLanguage": "JSONata", "StartAt": "Add", "States": {
            "Add": {"Type": "Pass", "Output": "{% {'sum': $states.input.x + $sum([1, 2])} %}", "End": True}}}
        jarn = sfn.create_state_machine(name="jsonata", definition=json.dumps(jsonata), publish=True,
                                        roleArn=f"arn:aws:iam::{ACCOUNT_A}:role/sfn")["stateMachineArn"]
        self.assertEqual(len(sfn.list_state_machine_versions(stateMachineArn=jarn)["stateMachineVersions"]), 1)

        for machine, name, expected in ((arn, "run-1", {"ok": True}), (arn, "run-2", {"ok": True}),
                                        (jarn, "run-1", {"sum": 10})):
            execution = sfn.start_execution(stateMachineArn=machine, name=name, input='{"x": 7}')["executionArn"]
            deadline = time.monotonic() + 10
            while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            self.assertEqual(described["status"], "SUCCEEDED", described)
            self.assertEqual(json.loads(described["output"]), expected)

    # ------------------------------------------------------------------ Distributed Map

    def _distributed_map_machine(self, name: str, tolerated_percentage: int | None = None,
                                 max_keys: int | None = None) -> str:
        """A Distributed Map over S3 objects `<prefix><n>.json`, shaped like ec2patch's own:
        the bucket and prefixes come from the state input, each child's `batch` from its item's
        key; a child whose batch is 3 fails; the ResultWriter's parameters are dynamic."""
        batch_of_key = ("States.StringToJson(States.ArrayGetItem(States.StringSplit("
                        "States.ArrayGetItem(States.StringSplit($$.Map.Item.Value.Key, '/'), 2), '.'), 0))")
        definition = {"StartAt": "Batches", "States": {"Batches": {
            "Type": "Map",
            "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                           "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "States.Format('{}/items/', $.run)",
                                          **({"MaxKeys": max_keys} if max_keys else {})}},
            "ItemSelector": {"run.$": "$.run", "batch.$": batch_of_key},
            "MaxConcurrency": 3,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "IsBroken",
                "States": {
                    "IsBroken": {"Type": "Choice", "Choices": [
                        {"Variable": "$.batch", "NumericEquals": 3, "Next": "Broken"}], "Default": "Work"},
                    "Broken": {"Type": "Fail", "Error": "BatchBroke", "Cause": "batch 3 is broken"},
                    "Work": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
                    "Done": {"Type": "Pass", "Parameters": {"done.$": "$.batch"}, "End": True}}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                             "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "States.Format('{}/results', $.run)"}},
            **({"ToleratedFailurePercentage": tolerated_percentage} if tolerated_percentage is not None else {}),
            "ResultPath": None,
            "End": True}}}
        sfn = self.client("stepfunctions", self.hub)
        return sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                        roleArn=f"arn:aws:iam::{HUB}:role/sfn")["stateMachineArn"]

    def _run_to_end(self, machine: str, name: str, execution_input: dict, timeout: float = 60) -> dict:
        sfn = self.client("stepfunctions", self.hub)
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(execution_input))["executionArn"]
        deadline = time.monotonic() + timeout
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            self.assertLess(time.monotonic(), deadline, "execution still running")
            time.sleep(0.1)
        return described

    def test_distributed_map_runs_real_child_executions(self) -> None:
        # No router here: the interpreter's own calls land in moto's default account.
        s3 = self.client("s3", {"aws_access_key_id": "ak", "aws_secret_access_key": "x"})
        s3.create_bucket(Bucket="dmap")
        for n in range(12):
            s3.put_object(Bucket="dmap", Key=f"r1/items/{n}.json", Body=b"{}")
        machine = self._distributed_map_machine("dmap-tolerant", tolerated_percentage=100)
        described = self._run_to_end(machine, "dmap-1", {"bucket": "dmap", "run": "r1"})
        self.assertEqual(described["status"], "SUCCEEDED", described)

        sfn = self.client("stepfunctions", self.hub)
        history = sfn.get_execution_history(executionArn=described["executionArn"], maxResults=1000)["events"]
        types = [e["type"] for e in history]
        self.assertIn("MapRunStarted", types)
        self.assertIn("MapRunSucceeded", types)
        map_run = sfn.list_map_runs(executionArn=described["executionArn"])["mapRuns"][0]["mapRunArn"]
        run = sfn.describe_map_run(mapRunArn=map_run)
        self.assertEqual((run["status"], run["maxConcurrency"]), ("SUCCEEDED", 3))
        self.assertEqual((run["itemCounts"]["total"], run["itemCounts"]["succeeded"], run["itemCounts"]["failed"]),
                         (12, 11, 1), run)
        self.assertEqual((run["executionCounts"]["total"], run["executionCounts"]["running"]), (12, 0), run)

        # Children: real executions of the map run, each with its own history.
        children = sfn.list_executions(mapRunArn=map_run, maxResults=100)["executions"]
        self.assertEqual(len(children), 12)
        by_batch = {}
        for child in children:
            child_described = sfn.describe_execution(executionArn=child["executionArn"])
            self.assertEqual(child_described["mapRunArn"], map_run)
            batch = json.loads(child_described["input"])["batch"]
            by_batch[batch] = child_described
            events = sfn.get_execution_history(executionArn=child["executionArn"])["events"]
            self.assertEqual(events[0]["type"], "ExecutionStarted")
            self.assertEqual(events[-1]["type"], "ExecutionFailed" if batch == 3 else "ExecutionSucceeded")
            self.assertEqual([e["id"] for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(sorted(by_batch), list(range(12)), "each child's batch comes from its key")
        self.assertEqual(by_batch[3]["status"], "FAILED")
        self.assertEqual((by_batch[3]["error"], by_batch[3]["cause"]), ("BatchBroke", "batch 3 is broken"))
        self.assertEqual(json.loads(by_batch[5]["output"]), {"done": 5})
        # The parent's own history holds none of the children's states.
        self.assertNotIn("Work", [e.get("stateEnteredEventDetails", {}).get("name") for e in history])

        # MaxConcurrency holds: never more than 3 children running at once.
        spans = sorted((c["startDate"], 1) for c in children) + sorted((c["stopDate"], -1) for c in children)
        in_flight, most = 0, 0
        for _, delta in sorted(spans, key=lambda s: (s[0], s[1])):
            in_flight += delta
            most = max(most, in_flight)
        self.assertEqual(most, 3)

        # The ResultWriter's parameters come from the state's input; it writes the manifest and
        # the results of succeeded and failed children.
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="dmap", Prefix="r1/results/")["Contents"]]
        manifest_key = next(k for k in keys if k.endswith("/manifest.json"))
        manifest = json.loads(s3.get_object(Bucket="dmap", Key=manifest_key)["Body"].read())
        self.assertEqual(manifest["MapRunArn"], map_run)
        written = {}
        for kind in ("SUCCEEDED", "FAILED"):
            for entry in manifest["ResultFiles"][kind]:
                written[kind] = json.loads(s3.get_object(Bucket="dmap", Key=entry["Key"])["Body"].read())
        self.assertEqual(len(written["SUCCEEDED"]), 11)
        self.assertEqual(len(written["FAILED"]), 1)
        self.assertEqual(written["FAILED"][0]["Error"], "BatchBroke")

    def test_distributed_map_fails_past_its_tolerated_failures(self) -> None:
        s3 = self.client("s3", {"aws_access_key_id": "ak", "aws_secret_access_key": "x"})
        s3.create_bucket(Bucket="dmap-strict")
        for n in range(5):
            s3.put_object(Bucket="dmap-strict", Key=f"r2/items/{n}.json", Body=b"{}")
        machine = self._distributed_map_machine("dmap-strict")
        described = self._run_to_end(machine, "dmap-2", {"bucket": "dmap-strict", "run": "r2"})
        self.assertEqual(described["status"], "FAILED", described)
        self.assertEqual(described["error"], "States.ExceedToleratedFailureThreshold", described)

    def test_the_item_reader_reads_every_page_and_an_empty_prefix(self) -> None:
        s3 = self.client("s3", {"aws_access_key_id": "ak", "aws_secret_access_key": "x"})
        s3.create_bucket(Bucket="dmap-pages")
        for n in range(7):
            s3.put_object(Bucket="dmap-pages", Key=f"r4/items/{n}.json", Body=b"{}")
        sfn = self.client("stepfunctions", self.hub)
        # Pages of 2 keys: 4 pages (AWS pages at 1000; the listing must not stop at the first).
        machine = self._distributed_map_machine("dmap-pages", tolerated_percentage=100, max_keys=2)
        described = self._run_to_end(machine, "dmap-4", {"bucket": "dmap-pages", "run": "r4"})
        self.assertEqual(described["status"], "SUCCEEDED", described)
        run = sfn.list_map_runs(executionArn=described["executionArn"])["mapRuns"][0]["mapRunArn"]
        self.assertEqual(sfn.describe_map_run(mapRunArn=run)["itemCounts"]["total"], 7)
        # Nothing under the prefix: zero items, the map run succeeds.
        described = self._run_to_end(machine, "dmap-5", {"bucket": "dmap-pages", "run": "nothing-here"})
        self.assertEqual(described["status"], "SUCCEEDED", described)
        run = sfn.list_map_runs(executionArn=described["executionArn"])["mapRuns"][0]["mapRunArn"]
        self.assertEqual(sfn.describe_map_run(mapRunArn=run)["itemCounts"]["total"], 0)

    def test_stopping_the_parent_aborts_its_map_run_and_children(self) -> None:
        s3 = self.client("s3", {"aws_access_key_id": "ak", "aws_secret_access_key": "x"})
        s3.create_bucket(Bucket="dmap-stop")
        for n in range(6):
            s3.put_object(Bucket="dmap-stop", Key=f"r3/items/{n}.json", Body=b"{}")
        machine = self._distributed_map_machine("dmap-stop", tolerated_percentage=100)
        sfn = self.client("stepfunctions", self.hub)
        arn = sfn.start_execution(stateMachineArn=machine, name="dmap-3",
                                  input=json.dumps({"bucket": "dmap-stop", "run": "r3"}))["executionArn"]
        deadline = time.monotonic() + 20
        while not (runs := sfn.list_map_runs(executionArn=arn)["mapRuns"]):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        while not sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        sfn.stop_execution(executionArn=arn)
        time.sleep(1.5)
        self.assertEqual(sfn.describe_execution(executionArn=arn)["status"], "ABORTED")
        children = sfn.list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
        self.assertTrue(children)
        self.assertTrue(all(c["status"] in ("ABORTED", "SUCCEEDED", "FAILED") for c in children), children)
        self.assertLess(len(children), 6, "no child starts after the stop")
        self.assertEqual(sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["status"], "ABORTED")


if __name__ == "__main__":
    unittest.main()


class TransactionPatchTest(unittest.TestCase):
    def test_transactions_no_longer_copy_tables(self) -> None:
        """The launcher's TransactWriteItems patch is in place: moto's per-action deep copy of the
        whole table (its rollback) gives back the table itself, items are still copied."""
        sys.path.insert(0, str(HERE))
        import launcher
        from moto.dynamodb import models

        launcher.transactions_back_up_items_not_tables()
        table = models.Table("t", account_id=HUB, region="us-east-1",
                             schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                             attr=[{"AttributeName": "pk", "AttributeType": "S"}])
        self.assertIs(models.copy.deepcopy(table), table)
        item = {"pk": {"S": "a"}}
        self.assertIsNot(models.copy.deepcopy(item), item)
        self.assertEqual(models.copy.deepcopy(item), item)


class QueryPartitionTest(unittest.TestCase):
    """A base-table Query lists its partition only, and answers as moto does without the patch."""

    def test_a_query_reads_its_partition_and_answers_as_before(self) -> None:
        import inspect
        from unittest import mock

        sys.path.insert(0, str(HERE))
        import launcher
        from moto.dynamodb.models import DynamoDBBackend, table as table_module

        launcher.queries_read_their_partition()
        backend = DynamoDBBackend("us-east-1", HUB)
        backend.create_table(
            "runs", schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            attr=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            throughput=None, billing_mode="PAY_PER_REQUEST", indexes=None, global_indexes=None, streams=None,
            sse_specification=None, tags=None, deletion_protection_enabled=False, warm_throughput=None,
        )
        for p in range(50):
            for s in (3, 1, 2, 10):
                backend.put_item("runs", {"pk": {"S": f"P{p:02}"}, "sk": {"S": f"S{s:02}"}, "v": {"N": str(s)}})
        table = backend.get_table("runs")
        patched_query, unpatched_query = table_module.Table.query, inspect.unwrap(table_module.Table.query)

        def run(query: Any, pk: str, forward: bool = True) -> list[str]:
            found, _, _ = query(table, table_module.DynamoType({"S": pk}), "GT", [table_module.DynamoType({"S": "S01"})],
                                None, None, forward, None)
            return [item.range_key.value for item in found]

        listed = []
        all_items = table_module.Table.all_items

        def counted(self: Any) -> Any:
            items = all_items(self)
            listed.append(len(items))
            return items

        with mock.patch.object(table_module.Table, "all_items", counted):
            self.assertEqual(run(patched_query, "P07"), ["S02", "S03", "S10"])
            self.assertEqual(listed, [4], "the queried partition, not the table's 200 items")
            self.assertEqual(run(patched_query, "P07", forward=False), ["S10", "S03", "S02"])
            self.assertEqual(run(patched_query, "NONE"), [])
            self.assertNotIn(table_module.DynamoType({"S": "NONE"}), table.items, "reading added no partition")
            listed.clear()
            self.assertEqual(len(table.all_items()), 200, "outside a Query the table is whole")
        for pk in ("P00", "P49", "NONE"):
            self.assertEqual(run(patched_query, pk), run(unpatched_query, pk))


class AccessKeyAccountTest(unittest.TestCase):
    """The account of an access key: the same answer as moto's walk over every account, without
    walking for a key IAM made or one already found (counted: the walk's iam_backends.items())."""

    def test_an_access_key_is_found_without_walking_every_account_and_answers_as_before(self) -> None:
        import inspect
        from unittest import mock

        sys.path.insert(0, str(HERE))
        import launcher
        from moto.core.base_backend import BackendDict
        from moto.iam import models
        from moto.sts.models import sts_backends

        launcher.remember_access_key_accounts()
        lookup = models.get_account_id_from
        walk = inspect.unwrap(lookup)  # moto's own get_account_id_from
        self.assertIsNot(walk, lookup)
        accounts = [f"{900_000_000_000 + n:012}" for n in range(40)]
        keys = {}
        for account in accounts:
            role = sts_backends[account]["aws"].assume_role(
                region_name="us-east-1", role_session_name="t", role_arn=f"arn:aws:iam::{account}:role/PatchExecRole",
                policy=None, duration=3600, external_id=None)
            keys[role.access_key_id] = account
        iam = models.iam_backends[ACCOUNT_B]["aws"]  # a user's key, as iam:CreateAccessKey makes
        iam.create_user(region_name="us-east-1", user_name="lookup-test")
        keys[iam.create_access_key("lookup-test").access_key_id] = ACCOUNT_B

        walks = []
        items = BackendDict.items

        def counted_items(self: Any) -> Any:
            if self is models.iam_backends:
                walks.append(1)
            return items(self)

        with mock.patch.object(BackendDict, "items", counted_items):
            for _ in range(50):
                for key, account in keys.items():
                    self.assertEqual(lookup(key), account)
            self.assertEqual(walks, [], "the account of a key IAM made is known without a walk")
            for key, account in keys.items():
                self.assertEqual(walk(key), account)  # what moto answers without the patch
            # A key that was made before the patch (or otherwise unnoted) is walked for once.
            old_key = models.AccessKey(user_name=None, prefix="ASIA", account_id=accounts[3])
            models.iam_backends[accounts[3]]["aws"].access_keys[old_key.access_key_id] = old_key
            walks.clear()
            for _ in range(50):
                self.assertEqual(lookup(old_key.access_key_id), accounts[3])
            self.assertEqual(len(walks), 1)
            walks.clear()
            # A key no account holds: moto's default account, walked for each time as before.
            self.assertEqual(lookup("AKIANOBODYHOLDSTHIS"), models.DEFAULT_ACCOUNT_ID)
            self.assertEqual(lookup("AKIANOBODYHOLDSTHIS"), walk("AKIANOBODYHOLDSTHIS"))
            self.assertEqual(len(walks), 2 + 1)  # two lookups and moto's own walk
            # A deleted key is no longer its account's: the answer moto gives for an unknown key.
            gone = next(k for k, a in keys.items() if a == accounts[7])
            del models.iam_backends[accounts[7]]["aws"].access_keys[gone]
            self.assertEqual(lookup(gone), walk(gone))
            self.assertEqual(lookup(gone), models.DEFAULT_ACCOUNT_ID)


class BackendByHostTest(unittest.TestCase):
    """The service a host name goes to: the same answer as moto's lookup for every host, without
    listing moto's package again for a host already seen (counted: list_of_moto_modules calls)."""

    def test_each_host_is_looked_up_once_and_answers_as_before(self) -> None:
        import inspect
        from unittest import mock

        sys.path.insert(0, str(HERE))
        import launcher
        from moto.moto_server import werkzeug_app

        launcher.remember_backends_by_host()
        app_class = werkzeug_app.DomainDispatcherApplication
        lookup = inspect.unwrap(app_class.get_backend_for_host)  # moto's own
        self.assertIsNot(lookup, app_class.get_backend_for_host)
        app = app_class(werkzeug_app.create_backend_app)
        services = ["ec2", "ssm", "sts", "iam", "dynamodb", "s3", "states", "lambda", "sns", "sqs", "logs",
                    "events", "kms", "cloudformation", "organizations"]
        hosts = [None, "moto_api", "instance_metadata", "dynamodb", "dynamodbstreams", "s3control",
                 "s3.amazonaws.com", "bucket.s3.amazonaws.com", "iam.amazonaws.com", "budgets.amazonaws.com",
                 "localhost:5000",
                 *werkzeug_app.backends.list_of_moto_modules(),
                 *(f"{s}.{r}.amazonaws.com" for s in services for r in ("us-east-1", "eu-west-1", "cn-north-1"))]
        expected = {host: lookup(app, host) for host in hosts}
        self.assertEqual(expected["ec2.eu-west-1.amazonaws.com"], "ec2")
        self.assertEqual(expected["ssm.us-east-1.amazonaws.com"], "ssm")
        self.assertIsNone(expected["localhost:5000"])
        listed = mock.patch.object(werkzeug_app.backends, "list_of_moto_modules",
                                   wraps=werkzeug_app.backends.list_of_moto_modules)
        with listed as listing:
            for host in hosts:
                self.assertEqual(app.get_backend_for_host(host), expected[host], host)
            listing.reset_mock()
            for _ in range(20):
                for host in hosts:
                    self.assertEqual(app.get_backend_for_host(host), expected[host], host)
            unknown = [h for h in hosts if h is not None and expected[h] is None]
            # Hosts with a backend: never listed again. Hosts without one: looked up as before.
            self.assertEqual(listing.call_count, 20 * len(unknown))


class DefaultPatchBaselinesTest(unittest.TestCase):
    """A patch group's default baselines: the same table as moto reads, read from the resource
    file once (counted: load_resource calls), and still each group's own copy."""

    def test_default_baselines_are_read_once_and_answer_as_before(self) -> None:
        import inspect
        from unittest import mock

        sys.path.insert(0, str(HERE))
        import launcher
        from moto.ssm import models

        launcher.remember_default_patch_baselines()
        group_class = models.FakePatchGroup
        self.assertIsNot(inspect.unwrap(group_class._load_latest_baselines), group_class._load_latest_baselines)
        regions = list(models.load_resource("ssm/resources/default_baselines.json"))
        self.assertIn("eu-west-1", regions)

        def moto_reads(region: str) -> dict:
            group = object.__new__(group_class)
            group.region_name = region
            inspect.unwrap(group_class._load_latest_baselines)(group)
            return group.default_associations

        with mock.patch.object(models, "load_resource", wraps=models.load_resource) as reads:
            groups = [group_class("Fake", region) for _ in range(10) for region in regions]
            self.assertLessEqual(reads.call_count, 1, "the resource file is read once")
        for group in groups:
            self.assertEqual(group.associations, moto_reads(group.region_name))
        backend = models.SimpleSystemManagerBackend("eu-west-1", ACCOUNT_A)
        self.assertEqual(backend.get_patch_baseline_for_patch_group("pg", "WINDOWS")[0],
                         moto_reads("eu-west-1")["WINDOWS"])
        # Each group has its own table: changing one (as RegisterPatchBaselineForPatchGroup does)
        # changes no other.
        first, second = group_class("a", "us-east-1"), group_class("b", "us-east-1")
        first.associations["WINDOWS"] = "pb-mine"
        self.assertEqual(second.associations["WINDOWS"], moto_reads("us-east-1")["WINDOWS"])
        self.assertIs(first.associations, first.default_associations)
        self.assertRaises(KeyError, group_class, "x", "no-such-region")


class SessionPolicyTest(unittest.TestCase):
    """IAM enforcement on (its own server): a session policy narrows what the role allows."""

    def setUp(self) -> None:
        self.proc, self.endpoint, self.log = _start_launcher()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()

    def client(self, service: str, creds: dict):
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            config=Config(retries={"max_attempts": 1}), **creds)

    def test_a_session_policy_narrows_the_role(self) -> None:
        bootstrap = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "x"}
        iam = self.client("iam", bootstrap)
        iam.create_user(UserName="caller")
        key = iam.create_access_key(UserName="caller")["AccessKey"]
        iam.put_user_policy(UserName="caller", PolicyName="assume", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))
        caller = iam.get_user(UserName="caller")["User"]["Arn"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": caller}}]}
        iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="reader", PolicyName="reads", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
                                                     "Action": ["ec2:DescribeInstances", "ssm:ListCommands"]}]}))
        role_arn = iam.get_role(RoleName="reader")["Role"]["Arn"]
        with urllib.request.urlopen(urllib.request.Request(
                self.endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                headers={"Content-Type": "text/plain"})) as reply:
            self.assertEqual(reply.status, 200)

        sts = self.client("sts", {"aws_access_key_id": key["AccessKeyId"],
                                  "aws_secret_access_key": key["SecretAccessKey"]})

        def session(policy: dict | None) -> dict:
            extra = {"Policy": json.dumps(policy)} if policy else {}
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="narrow", **extra)["Credentials"]
            return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                    "aws_session_token": creds["SessionToken"]}

        def allowed(creds: dict, call: str) -> bool:
            client = self.client("ec2" if call == "describe_instances" else "ssm", creds)
            try:
                getattr(client, call)()
                return True
            except ClientError as error:
                # Denied (moto's SSM answers a bare 403 without an error code), not failed.
                self.assertEqual(error.response["ResponseMetadata"]["HTTPStatusCode"], 403, error.response)
                return False

        whole_role = session(None)
        self.assertTrue(allowed(whole_role, "describe_instances"))
        self.assertTrue(allowed(whole_role, "list_commands"))
        ec2_only = session({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}]})
        self.assertTrue(allowed(ec2_only, "describe_instances"))
        self.assertFalse(allowed(ec2_only, "list_commands"), "the session policy does not allow it")
        # The session policy cannot add what the role lacks.
        wider = session({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "ssm:DescribeParameters"], "Resource": "*"}]})
        self.assertFalse(allowed(wider, "describe_parameters"))
        # Sessions keep working as the intersection after the caller's identity is checked.
        self.assertEqual(self.client("sts", ec2_only).get_caller_identity()["Arn"].split("/")[-1], "narrow")
