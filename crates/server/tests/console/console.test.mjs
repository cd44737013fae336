// The console in a real browser: Debian's Chromium, driven with playwright-core, against a real
// `chassis serve` (target/debug/chassis) and the project's mock model. It walks a person's
// flow and writes screenshots of every page at 1280x800 and 390x844 under target/console/.
//
//   cargo build --bin chassis && npm ci && node console.test.mjs
//
// CHASSIS_BIN and CHROMIUM override the binaries; CONSOLE_SHOTS the screenshot directory.

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../../..');
const CHASSIS = process.env.CHASSIS_BIN || join(root, 'target/debug/chassis');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.CONSOLE_SHOTS || join(root, 'target/console');
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const REJECTION = 'acme is not on the approved vendor list';

// The model asks to pay, says why, then answers with what the tool (or the rejection) said.
const SCRIPT = `
[[scenario]]
name = "count"
when_input_contains = "count"
[[scenario.turn]]
text = "First I look."
tool_calls = [{ name = "look", arguments = { what = "the first number" } }]
[[scenario.turn]]
text = "counted: {last_tool_result}"

[[scenario]]
name = "ship"
when_input_contains = "ship"
[[scenario.turn]]
text = "Shipping it."
tool_calls = [{ name = "ship", arguments = { box = "b1" } }]
[[scenario.turn]]
text = "shipped: {last_tool_result}"

[[scenario]]
name = "talk"
when_input_contains = "talk"
[[scenario.turn]]
text = "Hello there, {input}! This answer streams in pieces, word by word, to whoever watches."

[[scenario]]
name = "pay"
[[scenario.turn]]
text = "Invoice 7 from acme is due today, so I will pay it."
tool_calls = [{ name = "pay", arguments = { amount = 150, to = "acme" } }]
[[scenario.turn]]
text = "result: {last_tool_result}"
`;

const PAY = `
import json, sys
args = json.load(sys.stdin)
print("paid %s to %s" % (args["amount"], args["to"]))
`;

// Ships, slowly: past its one-second timeout, so whether it happened is unknown.
const SHIP = `
import json, sys, time
args = json.load(sys.stdin)
with open("shipments.log", "a") as log:
    log.write(args["box"] + "\\n")
time.sleep(5)
print("shipped " + args["box"])
`;

const children = [];
const dir = mkdtempSync(join(tmpdir(), 'chassis-console-'));

// Starts a process and resolves with its first stdout line that matches `pattern`, keeping
// everything it writes.
function start(args, pattern) {
  const child = spawn(CHASSIS, args, {
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  child.said = { out: '', err: '' };
  child.stderr.on('data', (d) => { child.said.err += d; });
  return new Promise((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start: ${child.said.err}`)), 60000);
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${child.said.err}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      child.said.out += `${line}\n`;
      const match = line.match(pattern);
      if (match) { clearTimeout(timer); resolveLine({ child, match }); }
    });
  });
}

async function api(base, token, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function until(what, check, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function step(text) {
  console.log(`- ${text}`);
}

async function main() {
  assert.ok(existsSync(CHASSIS), `${CHASSIS} is missing: cargo build --bin chassis`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  mkdirSync(SHOTS, { recursive: true });

  // The mock model and an agent whose irreversible `pay` waits for a human.
  writeFileSync(join(dir, 'script.toml'), SCRIPT);
  const mock = await start(['mock-model', '--script', join(dir, 'script.toml')], /^(http:\/\/\S+\/v1)$/);
  const agentDir = join(dir, 'agents/payer');
  mkdirSync(join(agentDir, 'tools'), { recursive: true });
  writeFileSync(join(agentDir, 'prompt.j2'), 'Pay what is due.');
  writeFileSync(join(agentDir, 'tools/pay.py'), PAY);
  writeFileSync(join(agentDir, 'agent.toml'), `
[agent]
name = "payer"
version = "v1"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "${mock.match[1]}"
[pricing."m:model"]
input = 2.5
output = 10.0
[[tools]]
name = "pay"
description = "Pay an invoice"
command = ["${PYTHON}", "tools/pay.py"]
args_schema = { type = "object", properties = { amount = { type = "number", minimum = 0 }, to = { type = "string" } }, required = ["amount", "to"], additionalProperties = false }
risk = "irreversible"
[approvals]
timeout = "1h"
[limits]
max_steps = 5
max_cost_usd = 1.0
`);

  // An agent allowed one step: the second asks a human to raise the limit.
  const counterDir = join(dir, 'agents/counter');
  mkdirSync(join(counterDir, 'tools'), { recursive: true });
  writeFileSync(join(counterDir, 'prompt.j2'), 'Count.');
  writeFileSync(join(counterDir, 'tools/look.py'), 'import json, sys\nprint("saw " + json.load(sys.stdin)["what"])\n');
  writeFileSync(join(counterDir, 'agent.toml'), `
[agent]
name = "counter"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "${mock.match[1]}"
[[tools]]
name = "look"
description = "Look at something"
command = ["${PYTHON}", "tools/look.py"]
args_schema = { type = "object", properties = { what = { type = "string" } }, required = ["what"] }
risk = "read_only"
[limits]
max_steps = 1
on_limit = "escalate"
`);

  // An agent whose irreversible `ship` outlives its timeout: its outcome is unknown.
  const shipperDir = join(dir, 'agents/shipper');
  mkdirSync(join(shipperDir, 'tools'), { recursive: true });
  writeFileSync(join(shipperDir, 'prompt.j2'), 'Ship it.');
  writeFileSync(join(shipperDir, 'tools/ship.py'), SHIP);
  writeFileSync(join(shipperDir, 'agent.toml'), `
[agent]
name = "shipper"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "${mock.match[1]}"
[[tools]]
name = "ship"
description = "Ship a box"
command = ["${PYTHON}", "tools/ship.py"]
args_schema = { type = "object", properties = { box = { type = "string" } }, required = ["box"] }
risk = "irreversible"
timeout = "1s"
[approvals]
irreversible = "auto"
`);

  // An agent that only talks, to a mock that stalls every streamed answer midway for three
  // seconds: long enough for a person (and this test) to see the answer arrive in pieces. It
  // starts answering after two seconds, so that the run page is following the run by then:
  // deltas are live only, never replayed to a stream that connects after them.
  const stalling = await start(
    ['mock-model', '--script', join(dir, 'script.toml'), '--faults', 'stream_stall', '--fault-rate', '1', '--hang', '3s', '--latency', '2s'],
    /^(http:\/\/\S+\/v1)$/,
  );
  const talkerDir = join(dir, 'agents/talker');
  mkdirSync(talkerDir, { recursive: true });
  writeFileSync(join(talkerDir, 'prompt.j2'), 'Talk.');
  writeFileSync(join(talkerDir, 'agent.toml'), `
[agent]
name = "talker"
prompt = "prompt.j2"
[model]
primary = "m:model"
idle_timeout = "30s"
[providers.m]
kind = "openai"
base_url = "${stalling.match[1]}"
`);

  // The server prints its login URL: the first admin token in the fragment.
  const serve = await start(
    ['--db', join(dir, 'journal.db'), 'serve', '--addr', '127.0.0.1:0', '--agents', join(dir, 'agents'), '--poll-interval', '100ms'],
    /^(http:\/\/[^/\s]+)\/#token=(\S+)$/,
  );
  const [loginUrl, base, admin] = serve.match;
  step(`serve at ${base}`);
  const viewer = (await api(base, admin, 'POST', '/v1/tokens', { name: 'vera', role: 'viewer' })).body.token;
  assert.ok(viewer, 'a viewer token');

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const problems = [];
  const watch = (page, who) => {
    page.on('pageerror', (e) => problems.push(`${who}: page error: ${e.message}`));
    page.on('console', (m) => {
      // A refused request is logged by the browser itself; the test provokes one on purpose.
      if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`${who}: console: ${m.text()}`);
    });
    return page;
  };

  try {
    const desk = await browser.newContext({ viewport: DESKTOP, timezoneId: 'America/New_York' });
    const page = watch(await desk.newPage(), 'approver');

    // Login: the token leaves the address bar for the tab's storage.
    await page.goto(loginUrl);
    await page.getByRole('heading', { name: 'Runs' }).waitFor();
    assert.ok(!page.url().includes(admin), `the token stays in the address bar: ${page.url()}`);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('chassis.token')), admin);
    await page.getByText('admin (admin)').waitFor();
    await page.getByText('times in America/New_York').waitFor();
    step('login moved the token from the URL to sessionStorage');

    // The schema check the inbox runs before sending edited arguments, on the keywords tool
    // schemas use (the server checks again).
    const verdicts = await page.evaluate(() => {
      const schema = {
        type: 'object',
        required: ['to', 'lines'],
        additionalProperties: false,
        $defs: { cents: { type: 'integer', minimum: 1 } },
        properties: {
          to: { type: 'string', pattern: '^[a-z]+$', maxLength: 8 },
          currency: { enum: ['EUR', 'USD'] },
          lines: { type: 'array', minItems: 1, items: { type: 'object', required: ['cents'], properties: { cents: { $ref: '#/$defs/cents' } } } },
          memo: { oneOf: [{ type: 'string' }, { type: 'null' }] },
        },
      };
      const paths = (value) => validate(schema, value).map((e) => `${e.path} ${e.message}`);
      return {
        valid: paths({ to: 'acme', currency: 'EUR', lines: [{ cents: 5 }], memo: null }),
        invalid: paths({ to: 'ACME corp', currency: 'GBP', lines: [{ cents: 1.5 }, {}], memo: 3, extra: 1 }),
        empty: paths({ to: 'acme', lines: [] }),
      };
    });
    assert.deepEqual(verdicts.valid, []);
    assert.deepEqual(verdicts.empty, ['/lines must have at least 1 item(s)']);
    for (const expected of [
      /^\/to must match/, /^\/to must be at most 8 characters/, /^\/currency must be one of "EUR", "USD"/,
      /^\/lines\/0\/cents must be an integer, not a number/, /^\/lines\/1\/cents is required/,
      /^\/memo must match exactly one allowed form/, /^\/extra is not an argument of this tool/,
    ]) {
      assert.ok(verdicts.invalid.some((line) => expected.test(line)), `${expected} in ${JSON.stringify(verdicts.invalid)}`);
    }
    assert.equal(verdicts.invalid.length, 7, JSON.stringify(verdicts.invalid));

    // Start a run from the console; it waits for approval of `pay`.
    await page.getByText('Start a run').click();
    await page.locator('#n-agent').selectOption('payer');
    await page.getByLabel('Input', { exact: true }).fill('Pay invoice 7 from acme');
    await page.getByRole('button', { name: 'Start' }).click();
    await page.waitForURL(/#\/runs\/[^/]+$/);
    const first = decodeURIComponent(page.url().split('#/runs/')[1]);
    await page.locator('#run-status .badge', { hasText: 'waiting' }).waitFor();
    await page.locator('[data-kind="approval_requested"]').waitFor();
    step(`run ${first} waits for approval`);

    // A second tab follows the run page live while the first decides in the inbox.
    const watcher = watch(await desk.newPage(), 'watcher');
    await watcher.goto(loginUrl);
    await watcher.getByRole('heading', { name: 'Runs' }).waitFor();
    await watcher.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, first);
    await watcher.locator('[data-kind="approval_requested"]').waitFor();
    await watcher.evaluate(() => { window.notReloaded = true; });
    await watcher.screenshot({ path: join(SHOTS, 'run-waiting-1280x800.png'), fullPage: true });

    // The inbox: edit the amount to something the schema refuses, see the error inline with
    // nothing sent, fix it, approve.
    const decisions = [];
    page.on('request', (r) => { if (r.method() === 'POST' && /\/calls\//.test(r.url())) decisions.push(r.url()); });
    await page.getByRole('link', { name: /^Inbox/ }).click();
    const card = page.locator(`.card[data-run="${first}"]`);
    await card.waitFor();
    await card.getByText("The model's reason").waitFor();
    await card.locator('p.text', { hasText: 'Invoice 7 from acme is due today' }).waitFor();
    await card.getByText('irreversible').waitFor();
    await page.screenshot({ path: join(SHOTS, 'inbox-1280x800.png'), fullPage: true });
    await card.getByRole('button', { name: 'Edit arguments' }).click();
    const editor = card.getByLabel('Arguments of pay (JSON)');
    await editor.fill('{"amount": -20, "to": "acme"}');
    const errors = card.locator('ul.errors');
    await errors.getByText('must be ≥ 0').waitFor();
    assert.match(await errors.innerText(), /\/amount/);
    const approveEdited = card.getByRole('button', { name: 'Approve with these arguments' });
    assert.ok(await approveEdited.isDisabled(), 'approve stays disabled while the arguments are invalid');
    await editor.fill('{"amount": 120, "to": "acme", "memo": "x"}');
    await errors.getByText('is not an argument of this tool').waitFor();
    await editor.fill('{"amount": 120');
    await errors.getByText(/not JSON/).waitFor();
    await page.screenshot({ path: join(SHOTS, 'inbox-invalid-1280x800.png'), fullPage: true });
    assert.deepEqual(decisions, [], 'nothing was sent while the arguments were invalid');
    await editor.fill('{"amount": 120, "to": "acme"}');
    await until('the errors to clear', async () => (await errors.locator('li').count()) === 0);
    assert.ok(await approveEdited.isEnabled());
    await approveEdited.click();
    await card.waitFor({ state: 'detached' });
    assert.equal(decisions.length, 1);
    step('edited arguments: inline schema errors, nothing sent until valid, then approved');

    // The other tab saw it all happen without reloading.
    await watcher.locator('[data-kind="approval_decided"]', { hasText: 'Approved with edited arguments' }).waitFor();
    await watcher.locator('[data-kind="tool_finished"]', { hasText: 'paid 120 to acme' }).waitFor();
    await watcher.locator('[data-kind="run_completed"]', { hasText: 'result: paid 120 to acme' }).waitFor();
    await watcher.locator('#run-status .badge', { hasText: 'completed' }).waitFor();
    assert.equal(await watcher.evaluate(() => window.notReloaded), true, 'the run page was reloaded');
    await watcher.locator('.wf-row').first().waitFor();
    await watcher.screenshot({ path: join(SHOTS, 'run-1280x800.png'), fullPage: true });
    step('the run page followed the run live to completed');

    // A second run, rejected from the keyboard with a reason the model then gets.
    const second = (await api(base, admin, 'POST', '/v1/runs', { agent: 'payer', input: 'Pay invoice 8 from acme' })).body.run_id;
    const card2 = page.locator(`.card[data-run="${second}"]`);
    await card2.waitFor({ timeout: 30000 });
    await card2.locator('h2').click();
    await page.keyboard.press('r');
    const reason = card2.getByLabel('Reason for the model');
    await reason.waitFor();
    assert.ok(await reason.evaluate((el) => el === document.activeElement), 'r focuses the reason');
    await reason.fill(REJECTION);
    await card2.getByRole('button', { name: 'Reject', exact: true }).click();
    await card2.waitFor({ state: 'detached' });
    const ended = await until('the rejected run to end', async () => {
      const run = (await api(base, admin, 'GET', `/v1/runs/${second}`)).body;
      return ['completed', 'failed'].includes(run.status) && run;
    });
    const events = (await api(base, admin, 'GET', `/v1/runs/${second}/events`)).body.events;
    const decided = events.find((e) => e.kind === 'approval_decided');
    assert.equal(decided.approved, false);
    assert.equal(decided.reason, REJECTION);
    assert.equal(decided.by, 'admin');
    assert.ok(!events.some((e) => e.kind === 'tool_started'), 'a rejected call never runs');
    const replies = events.filter((e) => e.kind === 'model_responded');
    assert.match(replies[replies.length - 1].message.content, new RegExp(REJECTION));
    assert.match(ended.output, new RegExp(REJECTION));
    await page.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, second);
    await page.locator('[data-kind="approval_decided"]', { hasText: `Rejected by admin: ${REJECTION}` }).waitFor();
    step('rejected with a reason (keyboard), and the model answered with it');

    // A limit escalated to the inbox: raised once, refused once.
    const counted = (await api(base, admin, 'POST', '/v1/runs', { agent: 'counter', input: 'count to two' })).body.run_id;
    const refused = (await api(base, admin, 'POST', '/v1/runs', { agent: 'counter', input: 'count to three' })).body.run_id;
    await page.evaluate(() => { location.hash = '#/inbox'; });
    const limitCard = page.locator(`.card[data-run="${counted}"]`);
    await limitCard.getByRole('heading', { name: 'Raise max_steps?' }).waitFor();
    await page.locator(`.card[data-run="${refused}"]`).waitFor();
    // The queue from the keyboard: oldest first, j moves down, k back up.
    const cards = page.locator('ol.inbox > .card');
    assert.equal(await cards.count(), 2);
    await cards.nth(0).locator('h2').click();
    await page.keyboard.press('j');
    await until('j to select the next item', async () => (await cards.nth(1).getAttribute('class')).includes('selected'));
    assert.ok(await cards.nth(1).evaluate((el) => el === document.activeElement), 'j moves the focus too');
    await page.keyboard.press('k');
    await until('k to select the item before', async () => (await cards.nth(0).getAttribute('class')).includes('selected'));
    await limitCard.getByLabel('New max_steps').fill('3');
    await limitCard.getByRole('button', { name: 'Raise and continue' }).click();
    await limitCard.waitFor({ state: 'detached' });
    const refuseCard = page.locator(`.card[data-run="${refused}"]`);
    await refuseCard.getByRole('button', { name: 'Refuse…' }).click();
    await refuseCard.getByLabel('Why (the run fails with it)').fill('one step is enough');
    await refuseCard.getByRole('button', { name: 'Refuse', exact: true }).click();
    await refuseCard.waitFor({ state: 'detached' });
    const raisedRun = await until('the raised run to complete', async () => {
      const run = (await api(base, admin, 'GET', `/v1/runs/${counted}`)).body;
      return run.status === 'completed' && run;
    });
    assert.equal(raisedRun.limits.max_steps, 3);
    assert.match(raisedRun.output, /counted: saw the first number/);
    const refusedRun = await until('the refused run to fail', async () => {
      const run = (await api(base, admin, 'GET', `/v1/runs/${refused}`)).body;
      return run.status === 'failed' && run;
    });
    const refusal = (await api(base, admin, 'GET', `/v1/runs/${refused}/events`)).body.events.find((e) => e.kind === 'limit_rejected');
    assert.equal(refusal.reason, 'one step is enough');
    assert.equal(refusal.by, 'admin');
    assert.ok(refusedRun.reason, 'the failed run says why');
    step('an escalated limit raised from the inbox, another refused');

    // A call whose outcome is unknown (it outlived its timeout): settled from the inbox.
    const shipped = (await api(base, admin, 'POST', '/v1/runs', { agent: 'shipper', input: 'ship box 1' })).body.run_id;
    const unknownCard = page.locator(`.card[data-run="${shipped}"]`);
    await unknownCard.getByRole('heading', { name: 'Did ship happen?' }).waitFor({ timeout: 60000 });
    await unknownCard.getByLabel('Result').fill('shipped b1, checked by hand');
    await unknownCard.getByRole('button', { name: 'Mark succeeded' }).click();
    await unknownCard.waitFor({ state: 'detached' });
    const settled = await until('the settled run to complete', async () => {
      const run = (await api(base, admin, 'GET', `/v1/runs/${shipped}`)).body;
      return run.status === 'completed' && run;
    });
    assert.match(settled.output, /shipped: shipped b1, checked by hand/);
    const shipEvents = (await api(base, admin, 'GET', `/v1/runs/${shipped}/events`)).body.events;
    assert.equal(shipEvents.filter((e) => e.kind === 'tool_started').length, 1, 'the effect ran once');
    assert.ok(shipEvents.some((e) => e.kind === 'tool_outcome_unknown'), 'its outcome was unknown');
    const resolvedBy = shipEvents.find((e) => e.kind === 'outcome_resolved');
    assert.equal(resolvedBy.by, 'admin');
    step('an unknown outcome settled from the inbox as succeeded; the effect ran once');

    // A third run waits, for the viewer to look at.
    const third = (await api(base, admin, 'POST', '/v1/runs', { agent: 'payer', input: 'Pay invoice 9 from acme', tags: { team: 'billing' } })).body.run_id;
    await until('the third run to wait', async () => (await api(base, admin, 'GET', `/v1/runs/${third}`)).body.status === 'waiting');

    // The runs list: filters and search by id.
    await page.evaluate(() => { location.hash = '#/runs'; });
    await page.locator(`tr[data-run="${third}"]`).waitFor();
    await page.getByLabel('Status').selectOption('completed');
    await page.waitForURL(/status=completed/);
    await page.locator(`tr[data-run="${first}"]`).waitFor();
    assert.equal(await page.locator(`tr[data-run="${third}"]`).count(), 0, 'the filter keeps a waiting run out');
    await page.evaluate(() => { location.hash = '#/runs?tag=team%3Dbilling'; });
    await page.locator(`tr[data-run="${third}"]`).waitFor();
    assert.equal(await page.locator('tbody tr[data-run]').count(), 1, 'the tag filter');
    await page.evaluate(() => { location.hash = '#/runs'; });
    await page.getByLabel('Find a run by id').fill(second);
    await page.getByRole('button', { name: 'Open' }).click();
    await page.waitForURL(new RegExp(`#/runs/${second}$`));
    step('runs: status and tag filters, search by id');

    // Screenshots of each page on a desktop.
    await page.evaluate(() => { location.hash = '#/runs'; });
    await page.locator(`tr[data-run="${third}"]`).waitFor();
    await page.screenshot({ path: join(SHOTS, 'runs-1280x800.png'), fullPage: true });
    await page.evaluate(() => { location.hash = '#/stats'; });
    await page.locator('figure.chart svg').first().waitFor();
    await page.getByRole('cell', { name: 'pay', exact: true }).waitFor();
    await page.screenshot({ path: join(SHOTS, 'stats-1280x800.png'), fullPage: true });

    // A viewer sees no decision controls, and a forced decision is refused.
    const look = await browser.newContext({ viewport: DESKTOP });
    const vpage = watch(await look.newPage(), 'viewer');
    await vpage.goto(`${base}/#token=${viewer}`);
    await vpage.getByText('vera (viewer)').waitFor();
    assert.equal(await vpage.getByText('Start a run').count(), 0, 'a viewer cannot start runs');
    await vpage.evaluate(() => { location.hash = '#/inbox'; });
    const vcard = vpage.locator(`.card[data-run="${third}"]`);
    await vcard.waitFor();
    await vpage.getByText('decisions need an approver token').waitFor();
    assert.equal(await vcard.locator('button, textarea, input').count(), 0, 'a viewer sees no decision controls');
    await vpage.screenshot({ path: join(SHOTS, 'inbox-viewer-1280x800.png'), fullPage: true });
    await vpage.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, third);
    await vpage.locator('#run-status .badge', { hasText: 'waiting' }).waitFor();
    assert.equal(await vpage.getByRole('button', { name: /Cancel run|Resume run/ }).count(), 0, 'a viewer sees no run controls');
    const forced = await vpage.evaluate(async ({ id }) => {
      const token = sessionStorage.getItem('chassis.token');
      const response = await fetch(`/v1/runs/${encodeURIComponent(id)}/calls/1.0/approve`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: '{}',
      });
      return { status: response.status, body: await response.json() };
    }, { id: third });
    assert.equal(forced.status, 403, JSON.stringify(forced.body));
    assert.equal((await api(base, admin, 'GET', `/v1/runs/${third}`)).body.status, 'waiting');
    const thirdEvents = (await api(base, admin, 'GET', `/v1/runs/${third}/events`)).body.events;
    assert.ok(!thirdEvents.some((e) => e.kind === 'approval_decided'), 'nothing was journaled for the refused request');
    step('a viewer sees no controls; a forced approve is refused with 403');

    // Every page on a phone.
    const phone = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const ppage = watch(await phone.newPage(), 'phone');
    await ppage.goto(loginUrl);
    await ppage.locator(`tr[data-run="${third}"]`).waitFor();
    const overflow = async () => ppage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(await overflow() <= 1, `the runs page scrolls sideways on a phone by ${await overflow()}px`);
    await ppage.screenshot({ path: join(SHOTS, 'runs-390x844.png'), fullPage: true });
    await ppage.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, first);
    await ppage.locator('[data-kind="run_completed"]').waitFor();
    await ppage.locator('.wf-row').first().waitFor();
    assert.ok(await overflow() <= 1, `the run page scrolls sideways on a phone by ${await overflow()}px`);
    await ppage.screenshot({ path: join(SHOTS, 'run-390x844.png'), fullPage: true });
    await ppage.evaluate(() => { location.hash = '#/inbox'; });
    await ppage.locator(`.card[data-run="${third}"]`).waitFor();
    await ppage.locator(`.card[data-run="${third}"]`).getByRole('button', { name: 'Edit arguments' }).click();
    assert.ok(await overflow() <= 1, `the inbox scrolls sideways on a phone by ${await overflow()}px`);
    await ppage.screenshot({ path: join(SHOTS, 'inbox-390x844.png'), fullPage: true });
    await ppage.evaluate(() => { location.hash = '#/stats'; });
    await ppage.locator('figure.chart svg').first().waitFor();
    assert.ok(await overflow() <= 1, `the stats page scrolls sideways on a phone by ${await overflow()}px`);
    await ppage.screenshot({ path: join(SHOTS, 'stats-390x844.png'), fullPage: true });
    step(`screenshots in ${SHOTS}`);

    // An operator's cancel from the run page, with who and why in the conversation.
    await page.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, third);
    await page.getByLabel('Cancel reason').fill('the invoice was paid by hand');
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await page.locator('#run-status .badge', { hasText: 'cancelled' }).waitFor();
    await page.locator('[data-kind="run_cancelled"]', { hasText: 'Cancelled by admin' }).waitFor();
    await page.getByText('the invoice was paid by hand').first().waitFor();
    assert.equal(await page.getByRole('button', { name: 'Cancel run' }).count(), 0, 'an ended run offers no cancel');
    step('cancelled from the run page');

    // Token deltas: a streamed answer shows on the run page piece by piece, before the answer
    // is journaled, and the journaled answer then takes its place.
    const talk = (await api(base, admin, 'POST', '/v1/runs', { agent: 'talker', input: 'talk to me' })).body.run_id;
    await page.evaluate((id) => { location.hash = `#/runs/${encodeURIComponent(id)}`; }, talk);
    const live = page.locator('li.live:not([hidden]) .text');
    await live.waitFor({ timeout: 20000 });
    const partial = await until('streamed text on the page', async () => (await live.innerText()).trim());
    const answer = 'Hello there, talk to me! This answer streams in pieces, word by word, to whoever watches.';
    assert.ok(answer.startsWith(partial) && partial.length < answer.length, `a piece of the answer: "${partial}"`);
    await page.locator('#run-status .badge', { hasText: 'running' }).waitFor();
    assert.equal(await page.locator('[data-kind="model_responded"]').count(), 0, 'shown before it is journaled');
    await page.screenshot({ path: join(SHOTS, 'run-streaming-1280x800.png'), fullPage: true });
    await page.locator('#run-status .badge', { hasText: 'completed' }).waitFor({ timeout: 30000 });
    await page.locator('[data-kind="model_responded"]', { hasText: answer }).waitFor();
    assert.equal(await page.locator('li.live:not([hidden])').count(), 0, 'the live piece gives way to the answer');
    step(`token deltas shown live ("${partial}"), then the journaled answer`);

    // The token is never in what the server wrote, past the login URL itself.
    const logged = serve.child.said.out.split('\n').slice(1).join('\n') + serve.child.said.err;
    assert.ok(!logged.includes(admin) && !logged.includes(viewer), 'a token reached the server output');
    assert.deepEqual(problems, [], 'the pages logged errors');
    console.log('== console: ok');
  } finally {
    await browser.close();
  }
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(e);
  for (const child of children) {
    if (child.said) console.error(`--- ${child.spawnargs.slice(1, 3).join(' ')} stderr:\n${child.said.err.slice(-4000)}`);
  }
} finally {
  for (const child of children) child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
