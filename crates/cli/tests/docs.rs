//! The docs tell the truth about the tree they ship in. Every Markdown file of the repository:
//!
//! - has no unfilled placeholder in its prose (an ALL_CAPS_WORD such as `DEMO_CLEAN_TIME` outside
//!   code, or TODO/TBD/FIXME/XXX);
//! - links only to files that exist (relative links, and repository paths like
//!   `tests/e2e/tests/terraform.rs` in text or code);
//! - names only Terraform outputs that exist in the root it runs in (`terraform -chdir=ROOT
//!   output NAME`; without `-chdir`, in one of the roots);
//! - names only `ec2patch` subcommands that exist (from the CLI's clap definition).
//!
//! Each check is a plain function over (path, text) so that the test also feeds it a planted
//! placeholder, dead link, unknown output and unknown subcommand and sees each reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use ec2patch_cli::Cli;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Directories never searched for docs: build output, tool installs, third-party code.
const SKIP_DIRS: &[&str] = &["target", ".git", "node_modules", ".terraform", ".local-stack", "corpus", "artifacts"];

/// Paths the docs name that a user creates (never in the repository), with why.
const USER_FILES: &[&str] = &[
    // The hub's settings file the deployment guide has the operator write.
    "terraform/hub/hub.auto.tfvars",
    "terraform/spoke/spoke.auto.tfvars",
    "terraform/hub/terraform.tfvars",
    "terraform/spoke/terraform.tfvars",
    // The S3 backend the deployment guide has the operator add (state, step 2).
    "terraform/hub/backend_override.tf",
    "terraform/spoke/backend_override.tf",
];

/// Every ALL_CAPS_WORD the repository's code, configuration and scripts use (not its Markdown):
/// such a word in prose is a name (`EC2PATCH_TABLE`, `CKV_AWS_272`, an error name); one that
/// appears in no code is a placeholder nobody filled (`DEMO_CLEAN_TIME`).
fn names_in_code(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with(".venv") {
                names_in_code(&path, out);
            }
        } else if !name.ends_with(".md") && !path.ends_with("crates/cli/tests/docs.rs") {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            out.extend(words(&text).filter(|w| is_caps_word(w)).map(str::to_owned));
        }
    }
}

fn is_caps_word(word: &str) -> bool {
    word.len() > 3
        && word.contains('_')
        && word.starts_with(|c: char| c.is_ascii_uppercase())
        && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with(".venv") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text split into prose (code blocks and inline code removed), inline code spans, and
/// code block lines.
struct Parts {
    prose: String,
    spans: Vec<String>,
    code_lines: Vec<String>,
}

fn parts(text: &str) -> Parts {
    let mut prose = String::new();
    let mut spans = Vec::new();
    let mut code_lines = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            code_lines.push(line.to_owned());
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            prose.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            match after.find('`') {
                Some(end) => {
                    spans.push(after[..end].to_owned());
                    rest = &after[end + 1..];
                }
                None => {
                    rest = after;
                    break;
                }
            }
        }
        prose.push_str(rest);
        prose.push('\n');
    }
    Parts { prose, spans, code_lines }
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
}

/// Unfilled placeholders in prose: ALL_CAPS words no code uses, and TODO/TBD/FIXME/XXX.
fn placeholders(names: &BTreeSet<String>, text: &str) -> Vec<String> {
    let prose = parts(text).prose;
    // Link targets are paths, not prose.
    let prose: String = prose
        .split("](")
        .enumerate()
        .map(|(i, p)| if i == 0 { p } else { p.split_once(')').map_or(p, |(_, r)| r) })
        .collect();
    words(&prose)
        .filter(|w| (is_caps_word(w) && !names.contains(*w)) || ["TODO", "TBD", "FIXME", "XXX"].contains(w))
        .map(str::to_owned)
        .collect()
}

/// Relative links and repository paths that do not resolve.
fn dead_paths(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let dir = file.parent().unwrap();
    let mut dead = Vec::new();
    // [text](target)
    for piece in text.split("](").skip(1) {
        let Some(target) = piece.split(')').next() else { continue };
        let target = target.split_whitespace().next().unwrap_or_default();
        if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        if !dir.join(path).exists() {
            dead.push(format!("link ({target})"));
        }
    }
    // Repository paths in text and code: they start with a top-level entry of the repository.
    let top: BTreeSet<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !SKIP_DIRS.contains(&n.as_str()) && !n.starts_with(".venv"))
        .collect();
    // Link targets were checked above, relative to the file.
    let text: String = text
        .split("](")
        .enumerate()
        .map(|(i, p)| if i == 0 { p } else { p.split_once(')').map_or(p, |(_, r)| r) })
        .collect();
    for token in text.split(|c: char| c.is_whitespace() || "`'\"()[],;:|=".contains(c)) {
        let token = token.trim_end_matches(['.', '!', '?']);
        let Some((first, rest)) = token.split_once('/') else { continue };
        if rest.is_empty() || !top.contains(first) || top.contains(token) {
            continue;
        }
        // Patterns and templates (`crates/functions/*`, `runs/<id>/...`) are not paths, and
        // build output (`target/`, `fuzz/target`) exists only after a build.
        if token.contains(['<', '>', '*', '{', '}', '$', '?'])
            || token.contains("...")
            || token.split('/').any(|s| s == "target")
        {
            continue;
        }
        if USER_FILES.contains(&token) {
            continue;
        }
        if !root.join(token).exists() && !dir.join(token).exists() {
            dead.push(format!("path {token}"));
        }
    }
    dead
}

/// Output names of each Terraform root (a directory with an outputs.tf under terraform/ or examples/).
fn terraform_outputs(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut roots = BTreeMap::new();
    for dir in ["terraform/hub", "terraform/spoke", "examples/local"] {
        let text = std::fs::read_to_string(root.join(dir).join("outputs.tf")).unwrap();
        let names = text.split("output \"").skip(1).map(|s| s.split('"').next().unwrap().to_owned()).collect();
        roots.insert(dir.to_owned(), names);
    }
    roots
}

/// `terraform ... output NAME` naming an output its root lacks.
fn unknown_outputs(outputs: &BTreeMap<String, BTreeSet<String>>, text: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    for line in text.lines() {
        for command in line.split("terraform ").skip(1) {
            let tokens: Vec<&str> = command
                .split(|c: char| c.is_whitespace() || c == '`' || c == ')' || c == '"')
                .filter(|t| !t.is_empty())
                .collect();
            let Some(at) = tokens.iter().position(|t| *t == "output") else { continue };
            // Only `terraform [-chdir=...] output`, not prose that happens to contain the words.
            if tokens[..at].iter().any(|t| !t.starts_with('-')) {
                continue;
            }
            let chdir = tokens[..at].iter().find_map(|t| t.strip_prefix("-chdir="));
            let Some(name) = tokens[at + 1..].iter().find(|t| !t.starts_with('-')) else { continue };
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let known = match chdir {
                Some(dir) => outputs.get(dir.trim_end_matches('/')).is_some_and(|names| names.contains(*name)),
                None => outputs.values().any(|names| names.contains(*name)),
            };
            if !known {
                unknown.push(format!(
                    "terraform {}output {name}",
                    chdir.map(|d| format!("-chdir={d} ")).unwrap_or_default()
                ));
            }
        }
    }
    unknown
}

/// `ec2patch SUB [SUB]` in code naming a subcommand the CLI does not have.
fn unknown_subcommands(cli: &clap::Command, text: &str) -> Vec<String> {
    let parts = parts(text);
    let mut unknown = Vec::new();
    let commands = parts.spans.iter().chain(&parts.code_lines).flat_map(|code| {
        code.split(['|', ';', '&', '(']).map(|c| c.trim().trim_start_matches("$ ").to_owned()).collect::<Vec<_>>()
    });
    for command in commands {
        let tokens: Vec<&str> = command.split_whitespace().collect();
        let args: &[&str] = match tokens.as_slice() {
            ["ec2patch", rest @ ..] => rest,
            ["cargo", "run", rest @ ..] if rest.contains(&"ec2patch-cli") => {
                rest.iter().position(|t| *t == "--").map_or(&[][..], |at| &rest[at + 1..])
            }
            _ => continue,
        };
        let mut current = cli;
        for arg in args {
            if arg.starts_with('-') || current.get_subcommands().next().is_none() {
                break;
            }
            // A placeholder such as SUBCOMMAND or <cmd> is not a claim.
            if !arg.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                break;
            }
            match current.find_subcommand(arg) {
                Some(sub) => current = sub,
                None => {
                    unknown.push(format!("{command} ({arg} is not a subcommand of {})", current.get_name()));
                    break;
                }
            }
        }
    }
    unknown
}

#[test]
fn docs_have_no_placeholders_dead_paths_unknown_outputs_or_subcommands() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() >= 10, "found only {files:?}");
    let outputs = terraform_outputs(&root);
    let cli = Cli::command();
    let mut names = BTreeSet::new();
    names_in_code(&root, &mut names);
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        problems.extend(placeholders(&names, &text).into_iter().map(|p| format!("{name}: placeholder {p}")));
        problems.extend(dead_paths(&root, file, &text).into_iter().map(|p| format!("{name}: dead {p}")));
        problems.extend(unknown_outputs(&outputs, &text).into_iter().map(|p| format!("{name}: unknown output: {p}")));
        problems.extend(unknown_subcommands(&cli, &text).into_iter().map(|p| format!("{name}: unknown command: {p}")));
    }
    assert!(problems.is_empty(), "{} problems in the docs:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_checks_catch_a_planted_placeholder_dead_link_unknown_output_and_subcommand() {
    let root = repo_root();
    let readme = root.join("README.md");
    let planted = "A clean clone takes DEMO_CLEAN_TIME. See [the guide](docs/no-such-guide.md) and \
                   `crates/core/src/no_such.rs`.\n\n```bash\nterraform -chdir=terraform/hub output -raw no_such_output\n\
                   terraform -chdir=terraform/spoke output -raw state_machine_arn\nec2patch local frobnicate\n```\n";
    let mut names = BTreeSet::new();
    names_in_code(&root, &mut names);
    assert!(names.contains("EC2PATCH_TABLE") && names.contains("CKV_AWS_272"), "{names:?}");
    assert_eq!(placeholders(&names, planted), ["DEMO_CLEAN_TIME"]);
    // A name the code uses is not a placeholder.
    assert!(placeholders(&names, "Set EC2PATCH_TABLE; checkov skips CKV_AWS_272.").is_empty());
    assert_eq!(
        dead_paths(&root, &readme, planted),
        ["link (docs/no-such-guide.md)", "path crates/core/src/no_such.rs"]
    );
    assert_eq!(
        unknown_outputs(&terraform_outputs(&root), planted),
        [
            "terraform -chdir=terraform/hub output no_such_output",
            "terraform -chdir=terraform/spoke output state_machine_arn"
        ]
    );
    let unknown = unknown_subcommands(&Cli::command(), planted);
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].contains("frobnicate is not a subcommand of local"), "{unknown:?}");
    // And what exists passes.
    let fine = "See [security](docs/security.md), `tests/e2e/tests/terraform.rs`.\n\n```bash\n\
                terraform -chdir=terraform/hub output -raw state_machine_arn\nec2patch local demo --yes\n```\n";
    assert!(placeholders(&names, fine).is_empty());
    assert!(dead_paths(&root, &readme, fine).is_empty());
    assert!(unknown_outputs(&terraform_outputs(&root), fine).is_empty());
    assert!(unknown_subcommands(&Cli::command(), fine).is_empty());
}
