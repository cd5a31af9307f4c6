//! Fleet features on the local stack (issue 15): waves that name AWS Organizations OUs instead
//! of account ids, resolved by PlanRun through moto's Organizations; pre-patch snapshots taken
//! before the patch command (the router's call journal shows the order) and deleted by the
//! scheduled cleanup once they expire.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_organizations::types::{ChildType, OrganizationFeatureSet};
use aws_sdk_sfn::types::ExecutionStatus;
use ec2patch_approval_monitor::snapshot_cleanup;
use ec2patch_core::snapshots::{self, DELETE_AFTER_TAG, INSTANCE_TAG, RUN_TAG, WAVE_TAG};
use ec2patch_core::time::now_epoch_seconds;
use ec2patch_core::{AccountId, Region, store};
use ec2patch_e2e::records::{instance_records, text};
use ec2patch_local::approvals::ApproveOptions;
use ec2patch_local::{EstateSpec, FaultRule, HUB_ACCOUNT, LocalStack, LocalStackOptions, SeedKind};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(180);
/// A time after every snapshot's due time (year 2286): lists the whole cleanup index.
const EVER: u64 = 9_999_999_999;

/// The organization the hub manages (moto: the hub's credentials create it, so the hub is the
/// management account):
///
/// ```text
/// root
/// ├── Workloads            direct: workloads_direct
/// │   └── Prod             prod_active, prod_suspended (closed), prod_excluded
/// └── Sandbox              sandbox
/// ```
struct Organization {
    root: String,
    workloads: String,
    sandbox: String,
    prod: String,
    workloads_direct: String,
    prod_active: String,
    prod_suspended: String,
    prod_excluded: String,
    sandbox_account: String,
}

async fn organization(stack: &LocalStack) -> Organization {
    let org = aws_sdk_organizations::Client::new(&stack.sdk);
    org.create_organization().feature_set(OrganizationFeatureSet::All).send().await.unwrap();
    let root = org.list_roots().send().await.unwrap().roots.unwrap()[0].id.clone().unwrap();
    let ou = |parent: String, name: &'static str| {
        let org = org.clone();
        async move {
            let created = org.create_organizational_unit().parent_id(parent).name(name).send().await.unwrap();
            created.organizational_unit.unwrap().id.unwrap()
        }
    };
    let workloads = ou(root.clone(), "Workloads").await;
    let sandbox = ou(root.clone(), "Sandbox").await;
    let prod = ou(workloads.clone(), "Prod").await;
    let account = |name: &'static str, parent: String| {
        let (org, root) = (org.clone(), root.clone());
        async move {
            let status = org
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .unwrap()
                .create_account_status
                .unwrap();
            let id = status.account_id.unwrap();
            org.move_account()
                .account_id(&id)
                .source_parent_id(root)
                .destination_parent_id(parent)
                .send()
                .await
                .unwrap();
            id
        }
    };
    let workloads_direct = account("workloads-direct", workloads.clone()).await;
    let prod_active = account("prod-active", prod.clone()).await;
    let prod_suspended = account("prod-suspended", prod.clone()).await;
    let prod_excluded = account("prod-excluded", prod.clone()).await;
    let sandbox_account = account("sandbox", sandbox.clone()).await;
    org.close_account().account_id(&prod_suspended).send().await.unwrap();
    // The tree is what the doc comment draws.
    let children = org.list_children().parent_id(&workloads).child_type(ChildType::OrganizationalUnit).send().await;
    assert_eq!(children.unwrap().children.unwrap().len(), 1);
    Organization {
        root,
        workloads,
        sandbox,
        prod,
        workloads_direct,
        prod_active,
        prod_suspended,
        prod_excluded,
        sandbox_account,
    }
}

/// `per_target` patchable instances in each of `accounts`, in us-east-1.
async fn seed_patchable(stack: &LocalStack, accounts: Vec<String>, per_target: usize) -> ec2patch_local::Estate {
    let spec = EstateSpec {
        regions: vec!["us-east-1".to_owned()],
        per_target: BTreeMap::from([(SeedKind::Patchable, per_target)]),
        ..EstateSpec::default()
    };
    stack.seed_accounts(accounts, &spec).await.unwrap()
}

fn set(accounts: &[&String]) -> BTreeSet<String> {
    accounts.iter().map(|a| (*a).clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waves_by_organizational_unit_patch_exactly_the_active_accounts_under_them() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let org = organization(&stack).await;
    let accounts =
        [&org.workloads_direct, &org.prod_active, &org.prod_suspended, &org.prod_excluded, &org.sandbox_account];
    let estate = seed_patchable(&stack, accounts.iter().map(|a| (*a).clone()).collect(), 2).await;

    // Wave 1 by OU (nested Prod included, one account excluded, one suspended); wave 2 the
    // root: everything wave 1 does not patch, which leaves the excluded account to wave 2.
    let input = json!({
        "accountWaves": [
            {"name": "workloads", "organizationalUnits": [org.workloads], "excludeAccounts": [org.prod_excluded]},
            {"name": "rest", "organizationalUnits": [org.root]}
        ],
        "wavePauseSeconds": 0,
        "abortOnIssues": false
    });
    let arn = stack.start_execution("org-waves", &input).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?} {:?}", done.error, done.cause);

    // The stored plan: the resolved accounts, where each came from, and who was left out why.
    let plan: Value = stack.hub.store.get_json(&store::plan_key("org-waves")).await.unwrap();
    let waves = plan["waves"].as_array().unwrap();
    let ids = |wave: &Value| -> BTreeSet<String> {
        wave["accounts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&waves[0]), set(&[&org.workloads_direct, &org.prod_active]), "{plan}");
    let sources: BTreeMap<String, (String, String)> = waves[0]["accountSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (text_of(s, "account"), (text_of(s, "from"), text_of(s, "parent"))))
        .collect();
    assert_eq!(sources[&org.prod_active], (org.workloads.clone(), org.prod.clone()));
    assert_eq!(sources[&org.workloads_direct], (org.workloads.clone(), org.workloads.clone()));
    let left_out: BTreeMap<String, String> =
        waves[0]["leftOut"].as_array().unwrap().iter().map(|l| (text_of(l, "account"), text_of(l, "reason"))).collect();
    assert_eq!(
        left_out,
        BTreeMap::from([
            (org.prod_suspended.clone(), "SUSPENDED".to_owned()),
            (org.prod_excluded.clone(), "excluded (excludeAccounts)".to_owned()),
        ])
    );
    // Wave 2: the root brings the sandbox, the excluded account (excluded from wave 1 only) and
    // the management account (the hub, no instances); wave 1's accounts are left out of it.
    assert_eq!(ids(&waves[1]), set(&[&org.prod_excluded, &org.sandbox_account, &HUB_ACCOUNT.to_owned()]));
    let wave2_left_out: BTreeMap<String, String> =
        waves[1]["leftOut"].as_array().unwrap().iter().map(|l| (text_of(l, "account"), text_of(l, "reason"))).collect();
    assert_eq!(wave2_left_out[&org.prod_active], "in an earlier wave (1. workloads)");
    assert_eq!(wave2_left_out[&org.prod_suspended], "SUSPENDED");

    // Exactly those accounts were patched, each instance once; the suspended one never.
    let recorded = instance_records(&stack, "org-waves").await;
    let patched: BTreeSet<String> =
        recorded.values().filter(|r| text(*r, "outcome") == "PATCHED").map(|r| text(r, "account")).collect();
    assert_eq!(
        patched,
        set(&[&org.workloads_direct, &org.prod_active, &org.prod_excluded, &org.sandbox_account]),
        "{recorded:?}"
    );
    let expected_instances = estate.instances.iter().filter(|i| i.account != org.prod_suspended).count();
    assert_eq!(recorded.len(), expected_instances);
    assert!(recorded.values().all(|r| text(r, "account") != org.prod_suspended));

    // The report says where the accounts came from, who was left out, and who approved.
    let report: Value = stack.hub.store.get_json(&ec2patch_core::report::json_key("org-waves")).await.unwrap();
    let wave = &report["waves"][0];
    assert_eq!(wave["accountsFrom"], json!({org.workloads.clone(): 2}), "{wave}");
    assert_eq!(wave["leftOut"].as_array().unwrap().len(), 2, "{wave}");
    assert_eq!(report["waves"][1]["accountsFrom"], json!({org.root.clone(): 3}));
    // The input as asked (both OUs), and each wave's timing.
    assert_eq!(report["input"]["organizationalUnits"], json!([org.workloads, org.root]), "{report}");
    assert_eq!(report["input"]["targets"], 5, "2 + 3 accounts x 1 region: {report}");
    for wave in report["waves"].as_array().unwrap() {
        assert!(wave["startedAt"].is_string() && wave["finishedAt"].is_string(), "{wave}");
        assert!(wave["durationSeconds"].as_u64().is_some_and(|s| s < 600), "{wave}");
    }
    for wave in report["waves"].as_array().unwrap() {
        let approval = &wave["approval"];
        assert_eq!(approval["status"], "approved", "{wave}");
        assert_eq!(approval["sourceIp"], "127.0.0.1", "the approver's address: {approval}");
        assert_eq!(approval["userAgent"], "ec2patch-local approve_until_done", "{approval}");
        assert!(approval["decidedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{approval}");
    }
    let html = stack.hub.store.get_text(&ec2patch_core::report::html_key("org-waves")).await.unwrap();
    assert!(html.contains(&format!("2 from {}", org.workloads)), "{html}");
    assert!(html.contains(&format!("<td>{}</td><td>{}</td><td>SUSPENDED</td>", org.prod_suspended, org.prod)));
    // And the CSV has every instance, with its account and outcome.
    let csv = stack.hub.store.get_text(&ec2patch_core::report::csv_key("org-waves")).await.unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), recorded.len());
    for record in recorded.values() {
        let row = format!(
            "{},{},{},{}",
            text(record, "account"),
            text(record, "region"),
            text(record, "instanceId"),
            text(record, "outcome")
        );
        assert!(rows.iter().any(|r| r.contains(&row)), "{row} not in\n{csv}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn organizational_units_that_resolve_to_nothing_or_do_not_exist_are_invalid_input() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let org = organization(&stack).await;
    let cases = [
        // Sandbox's only account is excluded: nothing left to patch.
        (
            "org-empty",
            json!({"accountWaves": [{"organizationalUnits": [org.sandbox], "excludeAccounts": [org.sandbox_account]}]}),
            "`accountWaves[0].organizationalUnits` resolved to no account to patch (1 left out: 1 excluded (excludeAccounts))",
        ),
        // An OU id of the right shape that the organization does not have (API shape).
        (
            "org-missing",
            json!({"organizationalUnits": ["ou-zzzz-zzzzzzzz"], "dryRun": true}),
            "`organizationalUnits[0]` ou-zzzz-zzzzzzzz is not an OU or root of this organization",
        ),
        // A malformed id never reaches Organizations.
        (
            "org-malformed",
            json!({"accountWaves": [{"organizationalUnits": ["Prod"]}]}),
            "`accountWaves[0].organizationalUnits[0]` must be an OU id (ou-xxxx-xxxxxxxx) or a root id (r-xxxx), got \"Prod\"",
        ),
    ];
    for (run_id, input, expected) in cases {
        let arn = stack.start_execution(run_id, &input).await.unwrap();
        let done = stack.wait_for_execution(&arn, TIMEOUT).await.unwrap();
        assert_eq!(done.status, ExecutionStatus::Failed, "{run_id}");
        assert_eq!(done.error.as_deref(), Some("InvalidInput"), "{run_id}: {:?}", done.cause);
        let cause: Value = serde_json::from_str(done.cause.as_deref().unwrap_or("{}")).unwrap();
        let message = cause["errorMessage"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{run_id}: {cause}");
    }
    // Nothing was inventoried or patched for any of them.
    assert_eq!(stack.router.calls().get("ssm:SendCommand"), None);
}

/// A spoke account's EC2, as the hub's functions reach it (the spoke role).
async fn spoke_ec2(stack: &LocalStack, account: &str) -> aws_sdk_ec2::Client {
    let config = stack
        .hub
        .spoke_sessions("fleet-test")
        .config_for(&AccountId::parse(account).unwrap(), &Region::new_unchecked("us-east-1"))
        .await
        .unwrap();
    aws_sdk_ec2::Client::new(&config)
}

/// The run's snapshots in the account: snapshot id -> tags.
async fn run_snapshots(ec2: &aws_sdk_ec2::Client, run_id: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let output = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{RUN_TAG}")).values(run_id).build())
        .send()
        .await
        .unwrap();
    output
        .snapshots()
        .iter()
        .map(|snapshot| {
            let tags = snapshot
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
                .collect();
            (snapshot.snapshot_id().unwrap().to_owned(), tags)
        })
        .collect()
}

fn snapshot_wave(run_accounts: &[&str]) -> Value {
    json!({
        "accountWaves": [{"name": "protected", "accounts": run_accounts, "regions": ["us-east-1"], "snapshot": true}],
        "wavePauseSeconds": 0,
        "abortOnIssues": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_wave_protects_every_volume_before_the_patch_and_skips_an_instance_it_cannot_protect() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let (first, second) = ("222222222222", "333333333333");
    let estate = seed_patchable(&stack, vec![first.to_owned(), second.to_owned()], 3).await;
    // One instance gets a tagged data volume: two volumes, two snapshots, the volume's tag copied.
    let ec2 = spoke_ec2(&stack, first).await;
    let two_volumes = estate.instances.iter().find(|i| i.account == first).unwrap().instance_id.clone();
    let described = ec2.describe_instances().instance_ids(&two_volumes).send().await.unwrap();
    let zone = described.reservations()[0].instances()[0].placement().unwrap().availability_zone().unwrap().to_owned();
    let volume = ec2
        .create_volume()
        .availability_zone(zone)
        .size(8)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .tags(Tag::builder().key("CostCenter").value("42").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let data_volume = volume.volume_id().unwrap().to_owned();
    ec2.attach_volume().volume_id(&data_volume).instance_id(&two_volumes).device("/dev/sdf").send().await.unwrap();
    // The second account's first CreateSnapshots is refused: that instance must not be patched.
    stack
        .router
        .faults()
        .add(FaultRule::error("ec2", "CreateSnapshots", "UnauthorizedOperation", 403).for_account(second).first(1));
    stack.router.start_journal();

    let arn = stack.start_execution("snap-wave", &snapshot_wave(&[first, second])).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?} {:?}", done.error, done.cause);

    let recorded = instance_records(&stack, "snap-wave").await;
    assert_eq!(recorded.len(), 6);
    let skipped: Vec<&String> =
        recorded.iter().filter(|(_, r)| text(*r, "outcome") == "SKIPPED").map(|(id, _)| id).collect();
    assert_eq!(skipped.len(), 1, "{recorded:?}");
    let unprotected = skipped[0].clone();
    let record = &recorded[&unprotected];
    assert_eq!(text(record, "account"), second);
    assert!(text(record, "reason").starts_with("SnapshotFailed: "), "{record:?}");
    assert!(text(record, "reason").contains("UnauthorizedOperation"), "{record:?}");
    assert!(snapshots::ids_on_record(record).is_empty());
    for (id, record) in recorded.iter().filter(|(id, _)| **id != unprotected) {
        assert_eq!(text(record, "outcome"), "PATCHED", "{id}: {record:?}");
        let expected = if *id == two_volumes { 2 } else { 1 };
        assert_eq!(snapshots::ids_on_record(record).len(), expected, "{id}: one snapshot per volume");
    }

    // Each protected instance's CreateSnapshots came before the SendCommand naming it; the
    // unprotected one is in no SendCommand at all.
    let journal = stack.router.journal();
    let position = |key: &str, id: &str| journal.iter().position(|call| call.key == key && call.body.contains(id));
    for id in recorded.keys() {
        let sent = position("ssm:SendCommand", id);
        if *id == unprotected {
            assert_eq!(sent, None, "{id} was sent a patch command without a snapshot");
            continue;
        }
        let (Some(snapshot), Some(sent)) = (position("ec2:CreateSnapshots", id), sent) else {
            panic!("{id}: no CreateSnapshots or no SendCommand in the journal");
        };
        assert!(snapshot < sent, "{id}: CreateSnapshots (call {snapshot}) after SendCommand (call {sent})");
    }

    // The emulator holds the snapshots, tagged for the run, the wave, the instance and expiry
    // (7 days, the default retention); the data volume's own tag was copied.
    let taken = run_snapshots(&ec2, "snap-wave").await;
    assert_eq!(taken.len(), 4, "{taken:?}");
    let ids = snapshots::ids_on_record(&recorded[&two_volumes]);
    let now = now_epoch_seconds();
    for id in &ids {
        let tags = &taken[id];
        assert_eq!(tags[WAVE_TAG], "protected");
        assert_eq!(tags[INSTANCE_TAG], two_volumes);
        let due = snapshots::parse_delete_after(&tags[DELETE_AFTER_TAG]).unwrap();
        assert!(due.abs_diff(now + 7 * 86_400) < 600, "{tags:?}");
    }
    assert_eq!(ids.iter().filter(|id| taken[*id].get("CostCenter").is_some_and(|v| v == "42")).count(), 1);

    // The report counts them, groups the skip, and the CSV names each instance's snapshots.
    let report: Value = stack.hub.store.get_json(&ec2patch_core::report::json_key("snap-wave")).await.unwrap();
    let wave = &report["waves"][0];
    assert_eq!(wave["snapshots"], json!({"instances": 5, "snapshots": 6}), "{wave}");
    assert_eq!(wave["skippedByReason"], json!({"SnapshotFailed": 1}), "{wave}");
    let csv = stack.hub.store.get_text(&ec2patch_core::report::csv_key("snap-wave")).await.unwrap();
    let row = csv.lines().find(|line| line.contains(&two_volumes)).unwrap();
    assert!(ids.iter().all(|id| row.contains(id.as_str())), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scheduled_cleanup_deletes_only_expired_ec2patch_snapshots() {
    let stack = LocalStack::start(LocalStackOptions::default()).await.unwrap();
    let account = "222222222222";
    let estate = seed_patchable(&stack, vec![account.to_owned()], 3).await;
    let arn = stack.start_execution("snap-cleanup", &snapshot_wave(&[account])).await.unwrap();
    let done = stack.approve_until_done(&arn, &ApproveOptions::new(TIMEOUT)).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{:?} {:?}", done.error, done.cause);
    let ec2 = spoke_ec2(&stack, account).await;
    let taken = run_snapshots(&ec2, "snap-cleanup").await;
    assert_eq!(taken.len(), 3, "{taken:?}");
    let mut ids = taken.keys().cloned();
    let (expiring, kept_by_hand, extended) = (ids.next().unwrap(), ids.next().unwrap(), ids.next().unwrap());
    // An operator keeps one (removes its delete-after tag) and extends another by 30 days; a
    // snapshot of their own, of the same instance's volume, carries no ec2patch tag at all.
    ec2.delete_tags().resources(&kept_by_hand).tags(Tag::builder().key(DELETE_AFTER_TAG).build()).send().await.unwrap();
    let now = now_epoch_seconds();
    let extended_to = now + 30 * 86_400;
    ec2.create_tags()
        .resources(&extended)
        .tags(Tag::builder().key(DELETE_AFTER_TAG).value(ec2patch_core::time::format_epoch(extended_to)).build())
        .send()
        .await
        .unwrap();
    let instance = &estate.instances[0].instance_id;
    let described = ec2.describe_instances().instance_ids(instance).send().await.unwrap();
    let root = described.reservations()[0].instances()[0].block_device_mappings()[0]
        .ebs()
        .unwrap()
        .volume_id()
        .unwrap()
        .to_owned();
    let own = ec2.create_snapshot().volume_id(root).send().await.unwrap().snapshot_id().unwrap().to_owned();
    // moto's accounts also own the snapshots behind its AMIs: those are left out of the counts.
    let all_snapshots = || async {
        let output = ec2.describe_snapshots().owner_ids("self").send().await.unwrap();
        output.snapshots().iter().map(|s| s.snapshot_id().unwrap().to_owned()).collect::<BTreeSet<String>>()
    };
    let images: BTreeSet<String> =
        all_snapshots().await.into_iter().filter(|id| !taken.contains_key(id) && *id != own).collect();
    let snapshots_left = || async { all_snapshots().await.difference(&images).cloned().collect::<BTreeSet<String>>() };

    // Nothing is due yet.
    let cleanup = snapshot_cleanup::delete_expired(&stack.hub, now).await.unwrap();
    assert!(cleanup.deleted.is_empty(), "{cleanup:?}");
    assert_eq!(snapshots_left().await.len(), 4);

    // Eight days on: only the untouched ec2patch snapshot goes.
    let eight_days_on = now + 8 * 86_400;
    let cleanup = snapshot_cleanup::delete_expired(&stack.hub, eight_days_on).await.unwrap();
    assert_eq!(cleanup.deleted, vec![expiring.clone()], "{cleanup:?}");
    assert_eq!(cleanup.kept, 2);
    assert!(cleanup.failures.is_empty(), "{cleanup:?}");
    assert_eq!(snapshots_left().await, BTreeSet::from([kept_by_hand.clone(), extended.clone(), own.clone()]));
    // The target is due again when the extended snapshot is; until then nothing is visited.
    let index = snapshots::due_entries(&stack.hub.store, EVER).await.unwrap();
    assert_eq!(index.iter().map(|entry| entry.delete_after).collect::<Vec<_>>(), vec![extended_to], "{index:?}");
    let again = snapshot_cleanup::delete_expired(&stack.hub, eight_days_on).await.unwrap();
    assert_eq!(again, snapshot_cleanup::SnapshotCleanup::default());

    // A month on: the extended one goes too; the kept and the operator's own stay for good.
    let cleanup = snapshot_cleanup::delete_expired(&stack.hub, extended_to + 1).await.unwrap();
    assert_eq!(cleanup.deleted, vec![extended.clone()], "{cleanup:?}");
    assert_eq!(snapshots_left().await, BTreeSet::from([kept_by_hand, own]));
    assert!(snapshots::due_entries(&stack.hub.store, EVER).await.unwrap().is_empty());
}

fn text_of(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_default().to_owned()
}
