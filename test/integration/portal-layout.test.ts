// The portal with many sandboxes, in a real headless Chromium (playwright-core driving Debian's
// /usr/bin/chromium) against a real gateway (in-process, real runc sandboxes): at 1400x900 with 50
// sandboxes every row's buttons sit on one line and the console stays on screen; delete asks
// first; the event log speaks words; snapshots are listed; the live charts draw what they sample.
// Needs root (runc). Leaves a screenshot in test-artifacts/portal-50.png.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = new URL('../../test-artifacts/', import.meta.url).pathname;
const VIEWPORT = { width: 1400, height: 900 };
const SANDBOXES = 50;

/** Run `fn` over `items`, `n` at a time. */
async function inBatches<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += n) await Promise.all(items.slice(i, i + n).map(fn));
}

interface RowBox {
  id: string;
  rowHeight: number;
  buttons: { action: string; top: number; bottom: number; right: number }[];
}

describe('portal layout in headless Chromium', { skip: !root ? 'needs root (runc sandboxes)' : !existsSync(CHROMIUM) ? `no ${CHROMIUM}` : false, timeout: 600_000 }, () => {
  let gw: TestGateway;
  let profile: string;
  let context: BrowserContext | undefined;
  let page: Page;
  const created = new Set<string>();
  const snapshots = new Set<string>();
  const problems: string[] = [];
  let ids: string[] = [];

  const create = async () => {
    const r = await gw.api('POST', '/sandboxes', { templateID: 'busybox' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    created.add(r.body.sandboxID as string);
    return r.body.sandboxID as string;
  };

  before(async () => {
    gw = await startTestGateway(['--jail-subnet', '10.78.47.0/24']);
    profile = mkdtempSync(join(tmpdir(), 'coppice-chromium-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    await inBatches([...Array(SANDBOXES).keys()], 10, create);
    ids = [...created];

    const { chromium } = await import('playwright-core');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: VIEWPORT,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('response', (r) => r.status() >= 400 && problems.push(`${r.status()} ${r.url()}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    page.on('dialog', (d) => {
      problems.push(`native dialog: ${d.message()}`);
      void d.dismiss();
    });
    await page.goto(`${gw.url}/devtools`);
    await page.fill('#key', gw.key);
    await page.click('#login-button');
    await page.locator('#app').waitFor({ state: 'visible' });
    await page.locator('#conn', { hasText: 'live' }).waitFor();
  });

  after(async () => {
    await context?.close().catch(() => undefined);
    for (const id of snapshots) await gw?.api('DELETE', `/snapshots/${id}`);
    if (gw) await inBatches([...created], 10, (id) => gw.api('DELETE', `/sandboxes/${id}`));
    await gw?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it(`holds ${SANDBOXES} sandboxes at 1400x900: each row's buttons on one line, nothing scrolls sideways, the console stays on screen`, async () => {
    await page.locator('#sandbox-count', { hasText: `(${SANDBOXES})` }).waitFor();
    assert.equal(await page.locator('#sandboxes tbody tr').count(), SANDBOXES);

    const rows: RowBox[] = await page.evaluate(() =>
      [...document.querySelectorAll<HTMLTableRowElement>('#sandboxes tbody tr')].map((tr) => ({
        id: tr.dataset.sandbox!,
        rowHeight: tr.getBoundingClientRect().height,
        buttons: [...tr.querySelectorAll<HTMLButtonElement>('td.actions button')].map((b) => {
          const r = b.getBoundingClientRect();
          return { action: b.dataset.action!, top: r.top, bottom: r.bottom, right: r.right };
        }),
      })),
    );
    for (const row of rows) {
      assert.deepEqual(row.buttons.map((b) => b.action), ['run', 'pause', 'snapshot', 'fork', 'inspect', 'delete'], row.id);
      const top = row.buttons[0]!.top;
      const height = row.buttons[0]!.bottom - top;
      for (const b of row.buttons) assert.ok(Math.abs(b.top - top) < 1, `${row.id}: ${b.action} is not on the first button's line (${b.top} vs ${top})`);
      assert.ok(row.rowHeight < 2 * height, `${row.id}: row is ${row.rowHeight}px for ${height}px buttons (wrapped)`);
    }
    // The whole table fits its card's width: the last button is reachable without scrolling sideways.
    const fit = await page.evaluate(() => {
      const box = document.getElementById('sandboxes-scroll')!;
      const card = document.getElementById('sandboxes-card')!.getBoundingClientRect();
      const last = document.querySelector('#sandboxes tbody tr td.actions button:last-child')!.getBoundingClientRect();
      return { scrollWidth: box.scrollWidth, clientWidth: box.clientWidth, lastRight: last.right, cardRight: card.right };
    });
    assert.ok(fit.scrollWidth <= fit.clientWidth, `the sandbox table scrolls sideways: ${JSON.stringify(fit)}`);
    assert.ok(fit.lastRight <= fit.cardRight, `the delete button is outside the card: ${JSON.stringify(fit)}`);

    const inViewport = async (sel: string) => {
      const b = (await page.locator(sel).boundingBox())!;
      assert.ok(b, `${sel} has no box`);
      return b.y >= 0 && b.x >= 0 && b.y + b.height <= VIEWPORT.height && b.x + b.width <= VIEWPORT.width;
    };
    assert.ok(await inViewport('#console'), 'the console card is on screen');
    assert.ok(await inViewport('#charts-card'), 'the charts are on screen');
    assert.equal(await page.evaluate(() => document.scrollingElement!.scrollHeight <= innerHeight), true, 'the page itself does not scroll');

    // The last sandbox, scrolled to in its list, opens in the console, which is still on screen.
    const lastId = rows.at(-1)!.id;
    const lastRow = page.locator(`#sandboxes tr[data-sandbox="${lastId}"]`);
    await lastRow.scrollIntoViewIfNeeded();
    await lastRow.locator('button[data-action="run"]').click();
    assert.ok(await inViewport('#console'), 'the console card is on screen after scrolling the list');
    await page.locator('#console-target', { hasText: lastId }).waitFor();
    await page.fill('#cmd', 'echo hello from the last row');
    await page.click('#run');
    await page.locator('#exec-status', { hasText: 'exited 0' }).waitFor({ timeout: 15_000 });
    assert.equal(await page.locator('#exec-output').textContent(), 'hello from the last row\n');
    assert.ok(await inViewport('#exec-output'), 'the output is on screen');
    await page.screenshot({ path: join(ARTIFACTS, 'portal-50.png') });
  });

  it('the live charts count sandboxes by state and show exec latency from /metrics', async () => {
    const states = page.locator(`#chart-states[data-running="${SANDBOXES}"]`);
    await states.waitFor({ state: 'attached', timeout: 20_000 });
    assert.ok((await page.locator('#chart-states rect.c-running').count()) > 0, 'bars drawn');
    await page.locator('#chart-states-legend', { hasText: `running ${SANDBOXES}` }).waitFor();

    for (const id of ids.slice(0, 5)) assert.equal((await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'true' })).status, 200);
    await page.waitForFunction(() => Number(document.getElementById('chart-latency')!.dataset.execs) >= 5, undefined, { timeout: 20_000 });
    assert.equal(await page.locator('#chart-latency polyline.c-mean').count(), 1);
    assert.match((await page.locator('#chart-latency-legend').textContent())!, /mean \d+ ms/);
  });

  it('delete asks in the page first: cancel keeps the sandbox, confirm deletes it', async () => {
    const id = ids[0]!;
    const row = page.locator(`#sandboxes tr[data-sandbox="${id}"]`);
    const dialog = page.locator('#confirm');
    await row.locator('button[data-action="delete"]').click();
    await dialog.waitFor({ state: 'visible' });
    assert.match((await page.locator('#confirm-title').textContent())!, new RegExp(`Delete sandbox ${id}`));
    await page.click('#confirm-cancel');
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#sandbox-status', { hasText: `kept ${id}` }).waitFor();
    assert.equal((await gw.api('GET', `/sandboxes/${id}`)).status, 200, 'cancel keeps it');
    assert.equal(await row.count(), 1);

    // Escape cancels too.
    await row.locator('button[data-action="delete"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await gw.api('GET', `/sandboxes/${id}`)).status, 200, 'escape keeps it');

    await row.locator('button[data-action="delete"]').click();
    await page.click('#confirm-ok');
    await row.waitFor({ state: 'detached', timeout: 30_000 });
    assert.equal((await gw.api('GET', `/sandboxes/${id}`)).status, 404);
    created.delete(id);
    await page.locator('#log li', { hasText: `sandbox ${id} deleted` }).waitFor();
  });

  it('the event log says what happened in words; the raw view is a toggle away', async () => {
    const id = ids[1]!;
    assert.equal((await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'ls /' })).status, 200);
    await page.locator('#log li', { hasText: `exec started in ${id}: ls /` }).waitFor();
    await page.locator('#log li', { hasText: `exec finished in ${id}: ls / → exit 0` }).waitFor();
    assert.equal((await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'exit 3' })).status, 200);
    await page.locator('#log li.w-bad', { hasText: `exec finished in ${id}: exit 3 → exit 3` }).waitFor();

    // ^C from the console reads as a signal to that process.
    await page.locator(`#sandboxes tr[data-sandbox="${id}"] button[data-action="run"]`).click();
    await page.fill('#cmd', 'sleep 60');
    await page.click('#run');
    await page.locator('#log li', { hasText: `exec started in ${id}: sleep 60` }).waitFor();
    await page.locator('#interrupt:not([disabled])').click();
    await page.locator('#log li', { hasText: new RegExp(`SIGINT sent to process \\d+ in ${id}`) }).waitFor();
    await page.locator('#log li.w-bad', { hasText: new RegExp(`exec finished in ${id}: sleep 60 → (killed by SIGINT|exit 130)`) }).waitFor({ timeout: 15_000 });

    await page.locator(`#sandboxes tr[data-sandbox="${id}"] button[data-action="pause"]`).click();
    await page.locator('#log li', { hasText: `sandbox ${id} paused` }).waitFor();
    await page.locator(`#sandboxes tr[data-sandbox="${id}"] button[data-action="resume"]`).click();
    await page.locator('#log li', { hasText: `sandbox ${id} resumed` }).waitFor();
    const fresh = await create();
    await page.locator('#log li', { hasText: `sandbox ${fresh} starting from template busybox` }).waitFor();
    await page.locator('#log li', { hasText: new RegExp(`sandbox ${fresh} ready at 10\\.78\\.47\\.`) }).waitFor();
    const fork = await gw.api('POST', `/sandboxes/${id}/fork`);
    assert.equal(fork.status, 201, JSON.stringify(fork.body));
    created.add(fork.body.sandboxID as string);
    await page.locator('#log li', { hasText: `sandbox ${fork.body.sandboxID as string} forked from ${id}` }).waitFor();

    const words = (await page.locator('#log').textContent())!;
    assert.doesNotMatch(words, /xstate\./, 'no XState internals in the words view');
    assert.equal(await page.locator('#log-raw').isVisible(), false);
    await page.check('#log-raw-toggle');
    assert.equal(await page.locator('#log').isVisible(), false);
    await page.locator('#log-raw li', { hasText: 'xstate.init' }).first().waitFor();
    await page.locator('#log-raw li', { hasText: 'EXEC' }).first().waitFor();
    await page.uncheck('#log-raw-toggle');
    await page.locator('#log').waitFor({ state: 'visible' });
  });

  it('lists a snapshot made over the API, starts a sandbox from it, deletes it after asking', async () => {
    const id = ids[2]!;
    const snap = await gw.api('POST', `/sandboxes/${id}/snapshot`);
    assert.equal(snap.status, 201, JSON.stringify(snap.body));
    const snapId = snap.body.snapshotID as string;
    snapshots.add(snapId);
    const row = page.locator(`#snapshots tr[data-snapshot="${snapId}"]`);
    await row.waitFor({ timeout: 15_000 });
    assert.match((await row.textContent())!, new RegExp(`${id}.*busybox`));
    assert.equal(await page.locator('#snapshots-empty').isVisible(), false);
    await page.locator('#log li', { hasText: `snapshot ${snapId} saved from ${id}` }).waitFor();

    await row.locator('button[data-action="start"]').click();
    const started = page.locator('#snapshot-status', { hasText: `from ${snapId}` });
    await page.locator('#snapshot-status', { hasText: /^started / }).waitFor({ timeout: 30_000 });
    const child = /started ([a-z0-9]{10})/.exec((await started.textContent())!)![1]!;
    created.add(child);
    await page.locator(`#sandboxes tr[data-sandbox="${child}"]`).waitFor();
    await page.locator('#log li', { hasText: `sandbox ${child} starting from snapshot ${snapId}` }).waitFor();

    await row.locator('button[data-action="delete"]').click();
    await page.locator('#confirm-title', { hasText: `Delete snapshot ${snapId}` }).waitFor();
    await page.click('#confirm-cancel');
    await page.locator('#snapshot-status', { hasText: `kept ${snapId}` }).waitFor();
    assert.ok(((await gw.api('GET', '/snapshots')).body as { snapshotID: string }[]).some((s) => s.snapshotID === snapId));
    await row.locator('button[data-action="delete"]').click();
    await page.click('#confirm-ok');
    await row.waitFor({ state: 'detached', timeout: 15_000 });
    assert.ok(!((await gw.api('GET', '/snapshots')).body as { snapshotID: string }[]).some((s) => s.snapshotID === snapId));
    snapshots.delete(snapId);
    await page.locator('#snapshots-empty').waitFor({ state: 'visible' });
  });

  it('says where pools come from without calling them bhyve-only, and nothing failed on the page', async () => {
    const text = (await page.locator('#pools-empty').textContent())!;
    assert.match(text, /--jail-pool-size/);
    assert.doesNotMatch(text, /pools exist for bhyve/);
    assert.deepEqual(problems, []);
  });
});
