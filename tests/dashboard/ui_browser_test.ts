/**
 * GET /ui in a real headless Chromium against a real proxy (process backend,
 * fake engines): the page loads with no console error and no request
 * outside the proxy, shows cold models without starting any engine, turns a
 * model ready live when a request arrives, and its buttons load and unload
 * models, with and without the admin token. Engines are counted as processes
 * (what the machine runs), not from the proxy's view. Screenshots go to
 * tmp/test-output/.
 *
 * Skipped, with the reason, only where no browser is installed.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { type E2eProxy, postChat, startProxy, waitUntil } from "../e2e/helpers.ts";
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

Deno.test({
  name: "ui: no console error or foreign request; cold stays cold; ready live; load, sleep (404), unload buttons",
  ignore: missing !== null,
  fn: async () => {
    const proxy = await startProxy(
      { enableModelSwitch: true },
      { a: { loadMs: 100 }, b: { loadMs: 100 }, [EVIL]: { loadMs: 100 } },
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

      // Open for a while (status read, event stream, a refresh): no engine process ever appeared.
      await page.locator("#state", { hasText: "idle" }).waitFor();
      assert.deepEqual(await proxy.engines(), [], "opening the dashboard started an engine");
      assert.equal(proxy.engineStarts(), 0);
      assert.deepEqual(seen.consoleErrors, [], "console errors while loading");
      assert.deepEqual(seen.pageErrors, []);

      // A request from elsewhere: the card turns ready without a reload.
      const res = await postChat(proxy.url, "a");
      assert.equal(res.status, 200);
      await res.body?.cancel();
      await page.locator(`${card("a")}[data-status="ready"]`).waitFor();
      await page.locator(`${card("a")} .v-gpus`, { hasText: "0 · 90 %" }).waitFor();
      await page.locator(".gpu .id", { hasText: "GPU 0 · 90 % awake" }).waitFor();
      await page.locator("#recent li[data-kind='coldStart']", { hasText: "a" }).waitFor();
      await page.locator(".log-line", { hasText: "/v1/chat/completions" }).first().waitFor();
      assert.equal(seen.urls.filter((u) => u === `${proxy.url}/ui`).length, 1, "the page was reloaded");
      assert.equal(await enginesOf(proxy, "a"), 1);

      // Load b: its engine starts (a's stops: one GPU).
      await page.locator(`${card("b")} button[data-action="load"]`).click();
      await toastWith(page, "Load b: loading");
      await page.locator(`${card("b")}[data-status="ready"]`).waitFor();
      await waitUntil(async () => await enginesOf(proxy, "b") === 1, 10_000, "b's engine");
      await waitUntil(async () => await enginesOf(proxy, "a") === 0, 10_000, "a's engine to stop");

      // Sleep and per-model unload: the proxy may not offer them yet; the answer is shown, nothing changes.
      const before = seen.consoleErrors.length;
      await page.locator(`${card("b")} button[data-action="sleep"]`).click();
      await page.locator(".toast.error", { hasText: /^Sleep b (is not available on this proxy \(404\)|failed)/ })
        .waitFor();
      await page.locator(`${card("b")} button[data-action="unload"]`).click();
      await page.locator(".toast.error", { hasText: /^Unload b (is not available on this proxy \(404\)|failed)/ })
        .waitFor();
      assert.equal(await enginesOf(proxy, "b"), 1);
      // The browser reports each failed fetch on its console: those, and only those.
      for (const text of seen.consoleErrors.slice(before)) {
        assert.match(text, /^Failed to load resource: the server responded with a status of 404/);
      }

      const dir = await testOutputDir();
      await page.screenshot({ path: `${dir}/dashboard-desktop.png`, fullPage: true });

      // Unload all: the engine process goes away and the card turns cold.
      await page.locator("#unload-all").click();
      await toastWith(page, "Unload all: unloading");
      await page.locator(`${card("b")}[data-status="cold"]`).waitFor();
      await waitUntil(async () => (await proxy.engines()).length === 0, 10_000, "no engine left");

      // A phone: nothing wider than the screen.
      await page.setViewportSize({ width: 390, height: 844 });
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - innerWidth");
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone screen`);
      await page.screenshot({ path: `${dir}/dashboard-phone.png`, fullPage: true });

      assert.deepEqual(seen.foreign, [], "requests outside the proxy");
      assert.deepEqual(seen.pageErrors, []);
      assert.equal(seen.consoleErrors.length, 2, `console errors: ${seen.consoleErrors.join(" | ")}`);
      console.log(`screenshots: ${dir}/dashboard-desktop.png, ${dir}/dashboard-phone.png`);
    } finally {
      await browser.close();
      await proxy.close();
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
