/**
 * GET /ui and its files over real HTTP: served without the admin token (the
 * page holds no data), with a Content-Security-Policy that allows this
 * origin only, and without a single URL to another host in any file; other
 * paths under /ui and wrong methods get the proxy's usual errors.
 */
import assert from "node:assert/strict";
import { PAGE_ASSETS } from "../../lib/dashboard/assets.ts";
import { startProxy } from "../e2e/helpers.ts";

Deno.test("page: /ui and its files, CSP, no token needed, errors for the rest", async () => {
  const proxy = await startProxy({ enableModelSwitch: true, adminToken: "admin-token-page-9e1f" }, { a: {} });
  try {
    const page = await fetch(`${proxy.url}/ui`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    const html = await page.text();
    assert.match(html, /<script src="ui\/app\.js" defer><\/script>/);
    assert.match(html, /<link rel="stylesheet" href="ui\/style\.css">/);

    for (const [path, type] of [["/ui/app.js", "text/javascript"], ["/ui/style.css", "text/css"]]) {
      const res = await fetch(`${proxy.url}${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("content-type"), `${type}; charset=utf-8`);
      assert.equal(await res.text(), PAGE_ASSETS.get(path)!.body);
    }
    const head = await fetch(`${proxy.url}/ui`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");

    const post = await fetch(`${proxy.url}/ui`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET");
    await post.body?.cancel();
    const slash = await fetch(`${proxy.url}/ui/`, { redirect: "manual" });
    assert.equal(slash.status, 308);
    assert.equal(slash.headers.get("location"), "../ui");
    const other = await fetch(`${proxy.url}/ui/secrets.txt`);
    assert.equal(other.status, 404);
    assert.equal((await other.json()).error.code, "not_found");
    const events = await fetch(`${proxy.url}/admin/events`, { method: "POST" });
    assert.equal(events.status, 405);
    await events.body?.cancel();
    assert.deepEqual(await proxy.engines(), []);
  } finally {
    await proxy.close();
  }
});

Deno.test("page: no file refers to another host (the page works offline)", () => {
  for (const [path, asset] of PAGE_ASSETS) {
    assert.doesNotMatch(asset.body, /\bhttps?:\/\//i, `${path} names a URL`);
    assert.doesNotMatch(asset.body, /(src|href)\s*=\s*["']?\/\//i, `${path} has a protocol-relative URL`);
    if (path.endsWith(".css")) assert.doesNotMatch(asset.body, /@import|\burl\(/i, `${path} loads something`);
  }
});
