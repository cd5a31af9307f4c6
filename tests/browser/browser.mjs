// Drives Debian's system Chromium (never a downloaded one) through playwright-core for
// tests/e2e/tests/browser.rs. Two modes, each checking what a person sees against what the Rust
// side expects (passed as a JSON argument), and saving screenshots:
//
//   node browser.mjs approve <link> <expected.json> <shot-prefix>
//     Opens the approval link, checks the confirmation page, screenshots it, prints
//     "ec2patch-browser: confirmed" and waits for a line "click" on stdin (the Rust side checks
//     meanwhile that loading the page decided nothing). Then presses Approve (the page's POST
//     form), checks the result page, screenshots it, prints "ec2patch-browser: decided".
//
//   node browser.mjs report <report.html> <expected.json> <shot-prefix>
//     Opens the run report (file://), checks the charts and every number against the expected
//     totals and per-wave outcomes, screenshots it, prints "ec2patch-browser: report ok".
//
// Any mismatch prints "ec2patch-browser: FAIL: ..." on stderr and exits 1.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TIMEOUT_MS = 20_000;

class Mismatch extends Error {}

const failures = [];
function expectEqual(what, actual, expected) {
  if (actual !== expected) {
    failures.push(`${what}: page shows ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}
function expectThat(what, ok) {
  if (!ok) failures.push(what);
}
function checkpoint(stage) {
  if (failures.length > 0) {
    throw new Mismatch(`${stage}:\n  ${failures.join('\n  ')}`);
  }
}

function say(line) {
  process.stdout.write(`ec2patch-browser: ${line}\n`);
}

/** The text a person sees in the first element matching `selector` (innerText: rendered, visible). */
async function shown(page, selector) {
  const locator = page.locator(selector).first();
  if ((await locator.count()) === 0) return `<no ${selector}>`;
  if (!(await locator.isVisible())) return `<${selector} not visible>`;
  return (await locator.innerText()).trim();
}

/** A two-row table (headers, then values) as {header: value}, from what is rendered. */
async function tableRow(table) {
  const headers = await table.locator('tr').nth(0).locator('th').allInnerTexts();
  const values = await table.locator('tr').nth(1).locator('td').allInnerTexts();
  return Object.fromEntries(headers.map((h, i) => [h.trim(), (values[i] ?? '<missing>').trim()]));
}

async function screenshot(page, prefix, name) {
  const path = resolve(`${prefix}${name}.png`);
  await page.screenshot({ path, fullPage: true });
  say(`screenshot ${path}`);
}

function nextStdinLine() {
  const lines = createInterface({ input: process.stdin });
  return new Promise((resolveLine, reject) => {
    lines.once('line', (line) => {
      resolveLine(line.trim());
      lines.close();
    });
    lines.once('close', () => reject(new Error('stdin closed before the go-ahead')));
  });
}

async function approve(page, link, expected, prefix) {
  const requests = [];
  page.on('request', (r) => requests.push(`${r.method()} ${r.url()}`));

  const response = await page.goto(link, { waitUntil: 'load' });
  expectEqual('confirmation page HTTP status', response?.status(), 200);
  const verb = 'Approve';
  expectEqual('heading', await shown(page, 'h1'),
    `${verb} wave "${expected.waveName}" of run ${expected.runId}?`);
  expectEqual('title', await page.title(), `${verb} wave ${expected.waveName}? · ec2patch`);
  expectThat('the page says nothing has been decided yet',
    (await shown(page, 'body')).includes('Nothing has been decided yet.'));
  expectEqual('run', await shown(page, '#run'), expected.runId);
  expectEqual('wave', await shown(page, '#wave'), `${expected.waveName} (wave ${expected.waveNumber})`);
  expectEqual('operation', await shown(page, '#operation'), expected.operation);
  expectEqual('accounts', await shown(page, '#accounts'),
    `${expected.accounts.length}: ${expected.accounts.join(', ')}`);
  expectEqual('regions', await shown(page, '#regions'), expected.regions.join(', '));
  expectEqual('instances to patch', await shown(page, '#patchable'), String(expected.patchable));
  expectEqual('skipped', await shown(page, '#skipped'),
    `${expected.unmanaged} not managed by SSM, ${expected.offline} with the SSM agent offline`);
  expectEqual('unreachable targets', await shown(page, '#unreachable'),
    `${expected.targetsFailed} of ${expected.targets}`);
  expectEqual('approve button', await shown(page, 'form button#approve'), 'Approve wave');
  expectEqual('reject button', await shown(page, 'form button#reject'), 'Reject wave');
  expectEqual('method of the approve form',
    await page.locator('form:has(#approve)').getAttribute('method'), 'post');
  expectEqual('scripts on the page', await page.locator('script').count(), 0);
  expectEqual('requests made by loading the page', requests.join(', '), `GET ${link}`);
  await screenshot(page, prefix, 'confirm');
  checkpoint('confirmation page');

  say('confirmed');
  const go = await nextStdinLine();
  if (go !== 'click') throw new Error(`expected "click" on stdin, got ${JSON.stringify(go)}`);

  requests.length = 0;
  const [decided] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST', { timeout: TIMEOUT_MS }),
    page.locator('#approve').click(),
  ]);
  await page.waitForLoadState('load');
  expectEqual('decision page HTTP status', decided.status(), 200);
  expectEqual('decision request', requests[0], `POST ${new URL('callback', link).href}`);
  expectEqual('decision', await shown(page, '#outcome'),
    `Wave "${expected.waveName}" of run ${expected.runId} is approved.`);
  expectThat('the decision page says the run continues',
    (await shown(page, 'body')).includes('The run continues with this wave.'));
  await screenshot(page, prefix, 'decided');
  checkpoint('decision page');
  say('decided');
}

const SERIES = [
  ['patched', 'patched'],
  ['failed', 'failed'],
  ['timed out', 'timedOut'],
  ['skipped', 'skipped'],
  ['unreachable', 'unreachable'],
];
const TOTALS = {
  Patched: 'patched',
  Failed: 'failed',
  'Timed out': 'timedOut',
  Skipped: 'skipped',
  Unreachable: 'unreachable',
  Unhealthy: 'unhealthy',
  'Pending reboot': 'pendingReboot',
};
const COUNTS = { Attempted: 'attempted', ...TOTALS };
delete COUNTS['Pending reboot'];

function compareRow(what, row, labels, expected) {
  expectEqual(`${what} columns`, Object.keys(row).filter((k) => k !== 'Targets failed').join('|'),
    Object.keys(labels).join('|'));
  for (const [label, key] of Object.entries(labels)) {
    expectEqual(`${what} "${label}"`, row[label], String(expected[key]));
  }
}

async function report(page, file, expected, prefix) {
  await page.goto(pathToFileURL(resolve(file)).href, { waitUntil: 'load' });
  expectEqual('heading', await shown(page, 'h1'), `Run ${expected.runId}`);
  expectThat(`status line says ${expected.status}: ${await shown(page, '#status')}`,
    (await shown(page, '#status')).startsWith(`Status: ${expected.status}`));
  compareRow('totals', await tableRow(page.locator('table#totals')), TOTALS, expected.totals);
  const legend = await page.locator('p.legend > span').allInnerTexts();
  expectEqual('chart legend', legend.map((s) => s.trim()).join('|'), SERIES.map(([l]) => l).join('|'));

  const sections = page.locator('section.wave');
  expectEqual('waves in the report', await sections.count(), expected.waves.length);
  for (const [i, wave] of expected.waves.entries()) {
    const section = page.locator(`section.wave#wave-${i}`);
    const what = `wave ${i + 1}`;
    expectEqual(`${what} heading`, (await section.locator('h2').innerText()).trim(),
      `Wave ${i + 1}: ${wave.name}`);
    compareRow(what, await tableRow(section.locator('table.counts')), COUNTS, wave);
    expectEqual(`${what} "Targets failed"`, (await tableRow(section.locator('table.counts')))['Targets failed'],
      `${wave.targetsFailed} of ${wave.targets}`);

    // The chart: rendered, one bar per non-empty series, widths proportional to the counts.
    const svg = section.locator('svg');
    expectEqual(`${what} charts`, await svg.count(), 1);
    const box = await svg.first().boundingBox();
    expectThat(`${what} chart is rendered (box ${JSON.stringify(box)})`, box && box.width >= 600 && box.height > 0);
    const bars = await svg.first().locator('rect').evaluateAll((rects) => rects.map((r) => ({
      title: r.querySelector('title')?.textContent ?? '',
      width: r.getBoundingClientRect().width,
      fill: r.getAttribute('fill'),
    })));
    const total = SERIES.reduce((sum, [, key]) => sum + wave[key], 0);
    const shownSeries = SERIES.filter(([, key]) => wave[key] > 0);
    expectEqual(`${what} chart bars`, bars.map((b) => b.title).join('|'),
      shownSeries.map(([label, key]) => `${label}: ${wave[key]}`).join('|'));
    for (const bar of bars) {
      const [label, count] = bar.title.split(': ');
      const want = Math.max(2, Math.floor((Number(count) * 600) / total));
      expectThat(`${what} bar "${label}" is ${bar.width}px wide, expected ${want}px`, Math.abs(bar.width - want) <= 1);
    }

    // Who approved, from where; skipped instances by reason; targets the hub could not reach.
    const approval = await section.locator('p.approval').innerText();
    expectThat(`${what} approval line "${approval}"`,
      approval.startsWith('Approval: approved by ') && approval.includes(` from ${wave.approvedFrom}`));
    const skippedRows = await section.locator('table.skipped tr:has(td)').evaluateAll((rows) =>
      rows.map((row) => Number(row.querySelectorAll('td')[1].innerText.trim())));
    expectEqual(`${what} skipped by reason, in all`, skippedRows.reduce((a, b) => a + b, 0), wave.skipped);
    const targetRows = await section.locator('table.failed-targets tr:has(td)').evaluateAll((rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((td) => td.innerText.trim())));
    expectEqual(`${what} targets the hub could not reach`, targetRows.map((cells) => cells[0]).join(', '),
      wave.failedTargets.join(', '));
    for (const cells of targetRows) {
      expectEqual(`${what} ${cells[0]} error`, cells[2], 'AssumeRoleFailed');
    }

    const failedRows = await section.locator('table.failures tr:has(td)').evaluateAll((rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((td) => td.innerText.trim())));
    const listed = failedRows.map((cells) => `${cells[2]} ${cells[3]}`).sort();
    expectEqual(`${what} failed instances listed`, listed.join(', '),
      wave.failedInstances.map((id) => `${id} FAILED`).sort().join(', '));
  }
  await screenshot(page, prefix, '');
  checkpoint('run report');
  say('report ok');
}

async function main() {
  const [mode, target, expectedJson, prefix] = process.argv.slice(2);
  if (!['approve', 'report'].includes(mode) || !target || !expectedJson || !prefix) {
    throw new Error('usage: node browser.mjs approve|report <link|file> <expected.json> <shot-prefix>');
  }
  const expected = JSON.parse(expectedJson);
  const profile = mkdtempSync(join(tmpdir(), 'ec2patch-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1100, height: 800 },
    timeout: TIMEOUT_MS,
  });
  try {
    context.setDefaultTimeout(TIMEOUT_MS);
    const page = context.pages()[0] ?? (await context.newPage());
    if (mode === 'approve') await approve(page, target, expected, prefix);
    else await report(page, target, expected, prefix);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    const message = error instanceof Mismatch ? error.message : (error?.stack ?? String(error));
    process.stderr.write(`ec2patch-browser: FAIL: ${message}\n`);
    process.exit(1);
  },
);
