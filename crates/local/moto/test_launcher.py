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
from pathlib import Path

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


class LauncherTest(unittest.TestCase):
    proc: subprocess.Popen
    endpoint: str

    @classmethod
    def setUpClass(cls) -> None:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "MOTO_ACCOUNT_ID"}
        env["MOTO_PORT"] = str(port)  # no router in this test: the interpreter calls moto itself
        cls.log = tempfile.TemporaryFile()
        cls.proc = subprocess.Popen(
            [sys.executable, str(HERE / "launcher.py"), "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=cls.log, stderr=subprocess.STDOUT,
        )
        cls.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(cls.endpoint + "/moto-api/", timeout=1):
                    break
            except OSError:
                if cls.proc.poll() is not None or time.monotonic() > deadline:
                    cls.tearDownClass()
                    raise RuntimeError("launcher did not start:\n" + cls._log_text())
                time.sleep(0.1)
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

    @classmethod
    def _log_text(cls) -> str:
        cls.log.seek(0)
        return cls.log.read().decode(errors="replace")[-5000:]

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


if __name__ == "__main__":
    unittest.main()
