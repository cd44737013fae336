// How long the console's runs page takes to load in a real browser over a journal holding many
// runs: `node bench.mjs [--runs 100000] [--times 10]`. Prints figures; asserts nothing about
// them (a figure on a loaded machine may be anything).
//
// Method: `chassis serve --workers 0` (API only: nothing drives the runs) over a fresh SQLite
// journal; RUNS runs are started through `POST /v1/runs` by 32 concurrent clients. Chromium
// (Debian's, headless) logs in once, then reloads `#/runs` TIMES times; a load is timed from
// the reload to the first page of rows drawn (50 `tr[data-run]`), i.e. HTML, CSS, JS, the
// `/v1/runs` page and the drawing. The first load of a fresh browser context (nothing cached)
// is reported on its own.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../../..');
const CHASSIS = process.env.CHASSIS_BIN || join(root, 'target/debug/chassis');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name} takes a positive whole number, not ${process.argv[i + 1]}`);
    process.exit(2);
  }
  return value;
};
const RUNS = arg('--runs', 100000);
const TIMES = arg('--times', 10);
const CLIENTS = 32;

const dir = mkdtempSync(join(tmpdir(), 'chassis-console-bench-'));
let serve;
try {
  if (!existsSync(CHASSIS)) throw new Error(`${CHASSIS} is missing: cargo build --bin chassis`);
  const agents = join(dir, 'agents/bench');
  mkdirSync(agents, { recursive: true });
  writeFileSync(join(agents, 'prompt.j2'), 'Answer.');
  writeFileSync(join(agents, 'agent.toml'), `
[agent]
name = "bench"
prompt = "prompt.j2"
[model]
primary = "m:model"
[providers.m]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
`);
  serve = spawn(CHASSIS, ['--db', join(dir, 'journal.db'), 'serve', '--addr', '127.0.0.1:0', '--agents', join(dir, 'agents'), '--workers', '0'], {
    cwd: dir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let said = '';
  serve.stderr.on('data', (d) => { said += d; });
  const [loginUrl, base, token] = await new Promise((ok, fail) => {
    serve.on('exit', (code) => fail(new Error(`chassis serve exited ${code}: ${said}`)));
    createInterface({ input: serve.stdout }).on('line', (line) => {
      const m = line.match(/^(http:\/\/[^/\s]+)\/#token=(\S+)$/);
      if (m) ok(m);
    });
  });

  // Seed the journal through the API, as applications start runs.
  const seeded = Date.now();
  let next = 0;
  let lastTenth = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (next < RUNS) {
      const i = next++;
      const response = await fetch(`${base}/v1/runs`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ agent: 'bench', input: `invoice ${i}`, tags: { batch: String(i % 10) } }),
      });
      if (response.status !== 201) throw new Error(`POST /v1/runs answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
      const tenth = Math.floor(((i + 1) * 10) / RUNS);
      if (tenth > lastTenth) { lastTenth = tenth; console.error(`seeded ${i + 1} of ${RUNS} runs`); }
    }
  }));
  const seedSeconds = (Date.now() - seeded) / 1000;

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const rows = page.locator('tbody tr[data-run]');
    const loaded = async () => {
      await page.waitForFunction(() => document.querySelectorAll('tbody tr[data-run]').length >= 50, null, { timeout: 60000 });
    };
    let started = performance.now();
    await page.goto(loginUrl);
    await loaded();
    const cold = performance.now() - started;
    const warm = [];
    const api = [];
    for (let i = 0; i < TIMES; i++) {
      started = performance.now();
      await page.reload();
      await loaded();
      warm.push(performance.now() - started);
      // The share of the server: the `/v1/runs` request as the browser timed it.
      api.push(await page.evaluate(() => {
        const runs = performance.getEntriesByType('resource').filter((e) => /\/v1\/runs\?/.test(e.name));
        return runs.length ? runs[runs.length - 1].duration : NaN;
      }));
    }
    const shown = await rows.count();
    warm.sort((a, b) => a - b);
    api.sort((a, b) => a - b);
    const median = warm[Math.floor(warm.length / 2)];
    const worst = warm[warm.length - 1];
    const ms = (x) => `${x.toFixed(1)} ms`;
    console.log(`console runs page, ${RUNS} runs in the journal (seeded in ${seedSeconds.toFixed(1)} s through POST /v1/runs):`);
    console.log(`  first load, fresh browser context: ${ms(cold)}`);
    console.log(`  reload to ${shown} rows drawn: median ${ms(median)}, worst ${ms(worst)} of ${TIMES}`);
    console.log(`  of which GET /v1/runs?limit=50 (browser's resource timing): median ${ms(api[Math.floor(api.length / 2)])}`);
  } finally {
    await browser.close();
  }
} finally {
  if (serve) serve.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
