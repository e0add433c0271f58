/**
 * The dashboard page's files, embedded in the module graph (text imports):
 * `deno compile` carries them, nothing is read from disk at run time, and no
 * URL outside the proxy is ever referenced.
 *
 * @module
 */
import PAGE from "./ui/index.html" with { type: "text" };
import SCRIPT from "./ui/app.js" with { type: "text" };
import STYLE from "./ui/style.css" with { type: "text" };

/**
 * A file of the page with its response headers.
 *
 * @example
 * ```ts
 * import type { PageAsset } from "./assets.ts";
 * const asset: PageAsset = { body: "body {}", headers: { "content-type": "text/css; charset=utf-8" } };
 * ```
 */
export interface PageAsset {
  body: string;
  headers: Record<string, string>;
}

/** This origin only: no inline script or style, no other host, no framing. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const COMMON = {
  "cache-control": "no-cache",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * The page's files by path.
 *
 * @example
 * ```ts
 * import { PAGE_ASSETS } from "./assets.ts";
 * PAGE_ASSETS.get("/ui")?.headers["content-type"]; // "text/html; charset=utf-8"
 * ```
 */
export const PAGE_ASSETS: ReadonlyMap<string, PageAsset> = new Map([
  [
    "/ui",
    {
      body: PAGE,
      headers: {
        ...COMMON,
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
      },
    },
  ],
  ["/ui/app.js", { body: SCRIPT, headers: { ...COMMON, "content-type": "text/javascript; charset=utf-8" } }],
  ["/ui/style.css", { body: STYLE, headers: { ...COMMON, "content-type": "text/css; charset=utf-8" } }],
]);
