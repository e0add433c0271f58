/**
 * GET /ui in a real headless Chromium against a real proxy (process backend,
 * fake engines): the page loads with no console error and no request
 * outside the proxy, shows cold models without starting any engine, turns a
 * model ready live when a request arrives, and its buttons load, sleep, wake
 * and unload models (a refusal shown as such), with and without the admin
 * token. Engines are counted as processes (what the machine runs) and by
 * their own counters, not from the proxy's view. Screenshots go to
 * tmp/test-output/.
 *
 * Skipped, with the reason, only where no browser is installed.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import type { ModelSpecInput } from "../../lib/config/schema.ts";
import { type E2eProxy, type FakeEngineOptions, postChat, startProxy, waitUntil } from "../e2e/helpers.ts";
import type { FakeVllmStats } from "../support/fake_vllm.ts";
import { assertNeverOversubscribed, createLedger } from "../support/gpu_ledger.ts";
import { browserMissing, launchBrowser, testOutputDir } from "../support/browser.ts";
import { takeScreenshot } from "../../scripts/screenshot.ts";

const missing = browserMissing();
if (missing) console.warn(`%cdashboard browser tests skipped: ${missing}`, "color: yellow");

const ADMIN = "admin-token-ui-5a0c77e1";
const EVIL = `<img src=x onerror="document.title='pwned'">&"'`;

/** What the page did: console errors, page errors, requests. */
function watch(page: Page, origin: string) {
  const seen = {
    consoleErrors: [] as string[],
    pageErrors: [] as string[],
    foreign: [] as string[],
    urls: [] as string[],
  };
  page.on("console", (message) => {
    if (message.type() === "error") seen.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => seen.pageErrors.push(error.message));
  page.on("request", (request) => {
    seen.urls.push(request.url());
    if (!request.url().startsWith(origin + "/")) seen.foreign.push(request.url());
  });
  page.on("dialog", (dialog) => dialog.accept());
  return seen;
}

/** Processes of this proxy running the fake engine for `model`. */
async function enginesOf(proxy: E2eProxy, model: string): Promise<number> {
  return (await proxy.engines()).filter((p) => p.args.includes(`--model ${model} `)).length;
}

function card(model: string): string {
  return `article.card[data-model="${model}"]`;
}

async function toastWith(page: Page, text: string): Promise<void> {
  await page.locator(".toast", { hasText: text }).first().waitFor();
}

/** A fake engine that runs the way vLLM does in the pool: its arguments from `{args}`, quick sleep and wake. */
function engine(share: number, spec: Partial<ModelSpecInput> = {}): FakeEngineOptions {
  return { loadMs: 100, vllmArgs: true, sleepMs: 30, wakeMs: 60, spec: { gpuMemoryUtilization: share, ...spec } };
}

/** What an engine itself counted (GET /_fake/stats on the engine). */
async function statsOf(proxy: E2eProxy, model: string): Promise<FakeVllmStats> {
  const engines = proxy.server.backend.describe().engines as Record<string, { upstream: string }>;
  return await (await fetch(`${engines[model].upstream}/_fake/stats`)).json();
}

Deno.test({
  name: "ui: no console error or foreign request; cold stays cold; live states; load, sleep, wake, unload buttons",
  ignore: missing !== null,
  fn: async () => {
    // Several engines at once: they share a GPU-memory ledger that fails loudly on any oversubscription.
    const ledger = Deno.makeTempFileSync({ prefix: "vllm-chill-ledger-", suffix: ".json" });
    createLedger(ledger);
    const proxy = await startProxy(
      { enableModelSwitch: true, idleTimeout: "10m" },
      { a: engine(0.45, { sleepAfter: "10m" }), b: engine(0.9), [EVIL]: engine(0.5) },
      { ledger },
    );
    const browser = await launchBrowser();
    try {
      const { page } = browser;
      const seen = watch(page, proxy.url);
      await page.goto(`${proxy.url}/ui`);
      await page.locator(".connection[data-connection='live']").waitFor();
      for (const model of ["a", "b"]) await page.locator(`${card(model)}[data-status="cold"]`).waitFor();
      assert.equal(await page.locator("article.card").count(), 3);

      // A model name is text, never markup.
      const evil = page.locator("article.card h3", { hasText: "<img" });
      assert.equal(await evil.textContent(), EVIL);
      assert.equal(await page.locator("article.card img").count(), 0);
      assert.notEqual(await page.title(), "pwned");

      // Open for a while (status read, event stream): no engine process ever appeared.
      await page.locator(".gpu .id", { hasText: "GPU 0 · 0 % awake" }).waitFor();
      assert.deepEqual(await proxy.engines(), [], "opening the dashboard started an engine");
      assert.equal(proxy.engineStarts(), 0);
      assert.deepEqual(seen.consoleErrors, [], "console errors while loading");
      assert.deepEqual(seen.pageErrors, []);

      // A request from elsewhere: the card turns ready without a reload.
      const res = await postChat(proxy.url, "a");
      assert.equal(res.status, 200);
      await res.body?.cancel();
      await page.locator(`${card("a")}[data-status="ready"]`).waitFor();
      await page.locator(`${card("a")} .v-gpus`, { hasText: "0 · 45 %" }).waitFor();
      await page.locator(".gpu .id", { hasText: "GPU 0 · 45 % awake" }).waitFor();
      await page.locator("#recent li[data-kind='coldStart']", { hasText: "a" }).waitFor();
      await page.locator(".log-line", { hasText: "/v1/chat/completions" }).first().waitFor();
      assert.equal(seen.urls.filter((u) => u === `${proxy.url}/ui`).length, 1, "the page was reloaded");
      assert.equal(await enginesOf(proxy, "a"), 1);

      // Sleep a, then wake it with Load: the engine itself slept and woke once, and was started once.
      await page.locator(`${card("a")} button[data-action="sleep"]`).click();
      await page.locator(`${card("a")}[data-status="sleeping"]`).waitFor();
      await page.locator(".gpu .id", { hasText: "GPU 0 · 0 % awake" }).waitFor();
      assert.equal((await statsOf(proxy, "a")).sleeps, 1);
      await page.locator(`${card("a")} button[data-action="load"]`).click();
      await page.locator(`${card("a")}[data-status="ready"]`).waitFor();
      await page.locator("#recent li[data-kind='wake']", { hasText: "a" }).waitFor();
      assert.notEqual(await page.locator(`${card("a")} .v-lastWakeMs`).textContent(), "—");
      const a = await statsOf(proxy, "a");
      assert.equal(a.wakes, 1);
      assert.equal(proxy.engineStarts("a"), 1, "woken, not started again");

      // Load b (0.9): a makes room by falling asleep; b starts.
      await page.locator(`${card("b")} button[data-action="load"]`).click();
      await page.locator(`${card("b")}[data-status="ready"]`).waitFor();
      await page.locator(`${card("a")}[data-status="sleeping"]`).waitFor();
      await page.locator(".gpu .models", { hasText: "a (asleep), b" }).waitFor();
      await waitUntil(async () => await enginesOf(proxy, "b") === 1, 10_000, "b's engine");

      // Sleep b, which may not sleep: the proxy's refusal is shown, nothing changes.
      const before = seen.consoleErrors.length;
      await page.locator(`${card("b")} button[data-action="sleep"]`).click();
      await page.locator(".toast.error", { hasText: /^Sleep b failed \(409\): / }).waitFor();
      assert.equal(await enginesOf(proxy, "b"), 1);
      assert.equal(await page.locator(`${card("b")}`).getAttribute("data-status"), "ready");
      // The browser reports the refused fetch on its console: that, and only that.
      assert.deepEqual(
        // (typed again: the deepEqual above narrowed it to an empty array)
        (seen.consoleErrors as string[]).slice(before).map((t) => t.replace(/ \(.*$/, "")),
        ["Failed to load resource: the server responded with a status of 409"],
      );

      const dir = await testOutputDir();
      await page.screenshot({ path: `${dir}/dashboard-desktop.png`, fullPage: true });

      // Unload b alone: its engine process goes away, a's stays (asleep).
      await page.locator(`${card("b")} button[data-action="unload"]`).click();
      await page.locator(`${card("b")}[data-status="cold"]`).waitFor();
      await waitUntil(async () => await enginesOf(proxy, "b") === 0, 10_000, "b's engine to stop");
      assert.equal(await enginesOf(proxy, "a"), 1);

      // Unload all: no engine left.
      await page.locator("#unload-all").click();
      await toastWith(page, "Unload all: unloading");
      await page.locator(`${card("a")}[data-status="cold"]`).waitFor();
      await waitUntil(async () => (await proxy.engines()).length === 0, 10_000, "no engine left");

      // A phone: nothing wider than the screen.
      await page.setViewportSize({ width: 390, height: 844 });
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - innerWidth");
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone screen`);
      await page.screenshot({ path: `${dir}/dashboard-phone.png`, fullPage: true });

      assert.deepEqual(seen.foreign, [], "requests outside the proxy");
      assert.deepEqual(seen.pageErrors, []);
      assert.equal(seen.consoleErrors.length, 1, `console errors: ${seen.consoleErrors.join(" | ")}`);
      assertNeverOversubscribed(ledger, { allowRefusals: false });
      console.log(`screenshots: ${dir}/dashboard-desktop.png, ${dir}/dashboard-phone.png`);
    } finally {
      await browser.close();
      await proxy.close();
      Deno.removeSync(ledger);
    }
  },
});

Deno.test({
  name: "ui: asks for the admin token once, keeps it for the tab; its buttons load and unload with it",
  ignore: missing !== null,
  fn: async () => {
    const proxy = await startProxy({ enableModelSwitch: true, adminToken: ADMIN }, { a: { loadMs: 100 } });
    const browser = await launchBrowser();
    try {
      const { page } = browser;
      const seen = watch(page, proxy.url);
      await page.goto(`${proxy.url}/ui`);
      await page.locator("#token-panel:not([hidden])").waitFor();
      await page.locator(".connection[data-connection='locked']").waitFor();
      assert.equal(await page.locator("article.card").count(), 0, "nothing shown without the token");

      // A wrong token is refused and asked again.
      await page.fill("#token-input", "not-the-token-1234");
      await page.click("#token-form button[type=submit]");
      await page.locator("#token-reason", { hasText: "refused" }).waitFor();
      await page.locator("#token-panel:not([hidden])").waitFor();

      await page.fill("#token-input", ADMIN);
      await page.click("#token-form button[type=submit]");
      await page.locator(".connection[data-connection='live']").waitFor();
      await page.locator(`${card("a")}[data-status="cold"]`).waitFor();
      assert.equal(await page.evaluate(() => sessionStorage.getItem("vllm-chill.adminToken")), ADMIN);

      // Kept for the tab: a reload goes straight to live.
      await page.reload();
      await page.locator(".connection[data-connection='live']").waitFor();
      assert.equal(await page.locator("#token-panel").isHidden(), true);

      await page.locator(`${card("a")} button[data-action="load"]`).click();
      await page.locator(`${card("a")}[data-status="ready"]`).waitFor();
      await waitUntil(async () => await enginesOf(proxy, "a") === 1, 10_000, "a's engine");
      await page.locator("#unload-all").click();
      await page.locator(`${card("a")}[data-status="cold"]`).waitFor();
      await waitUntil(async () => (await proxy.engines()).length === 0, 10_000, "no engine left");

      // Without the token, the buttons ask for it instead of acting.
      await page.evaluate(() => sessionStorage.removeItem("vllm-chill.adminToken"));
      await page.reload();
      await page.locator("#token-panel:not([hidden])").waitFor();
      assert.equal(proxy.engineStarts(), 1);

      assert.deepEqual(seen.foreign, []);
      assert.deepEqual(seen.pageErrors, []);
      for (const text of seen.consoleErrors) {
        assert.match(text, /^Failed to load resource: the server responded with a status of 40[13]/);
      }
      const logs = proxy.logs.lines.join("\n");
      assert.ok(!logs.includes(ADMIN), "the admin token reached the log");
    } finally {
      await browser.close();
      await proxy.close();
    }
  },
});

Deno.test({
  name: "ui: `deno task screenshot` photographs a live dashboard",
  ignore: missing !== null,
  fn: async () => {
    const out = `${await testOutputDir()}/dashboard.png`;
    await Deno.remove(out).catch(() => {});
    assert.equal(await takeScreenshot({ out, width: 1280, height: 960 }), out);
    const png = await Deno.readFile(out);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG file");
    assert.ok(png.byteLength > 20_000, `a ${png.byteLength}-byte picture is too small to show the page`);
  },
});
