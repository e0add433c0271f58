/**
 * A headless Chromium for the dashboard's browser tests and the screenshot
 * task: Debian's `chromium` (or `VLLM_CHILL_CHROMIUM`) driven by
 * npm:playwright-core, a fresh profile directory per launch, no network
 * beyond what the page asks for (no background services, no QUIC).
 *
 * @module
 */
import { type BrowserContext, chromium, type Page } from "playwright-core";

/**
 * Where the browser is looked for.
 *
 * @example
 * ```ts
 * import { CHROMIUM_PATH } from "./browser.ts";
 * CHROMIUM_PATH.length > 0; // true
 * ```
 */
export const CHROMIUM_PATH: string = Deno.env.get("VLLM_CHILL_CHROMIUM") ?? "/usr/bin/chromium";

/**
 * Why no browser can be had here, or null when one is installed.
 *
 * @example
 * ```ts
 * import { browserMissing } from "./browser.ts";
 * const reason = browserMissing(); // null where chromium is installed
 * ```
 */
export function browserMissing(): string | null {
  try {
    if (Deno.statSync(CHROMIUM_PATH).isFile) return null;
  } catch { /* absent */ }
  return `no browser at ${CHROMIUM_PATH}: install Debian's chromium (bash .ci/run does, as root: apt-get install -y ` +
    `chromium) or set VLLM_CHILL_CHROMIUM`;
}

/**
 * A launched browser with one page.
 *
 * @example
 * ```ts ignore
 * import { launchBrowser } from "./browser.ts";
 * const browser = await launchBrowser();
 * await browser.page.goto("http://127.0.0.1:8080/ui");
 * await browser.close();
 * ```
 */
export interface HeadlessBrowser {
  context: BrowserContext;
  page: Page;
  /** Closes the browser and removes its profile directory. */
  close(): Promise<void>;
}

/**
 * Launches Chromium headless with a fresh `--user-data-dir`.
 *
 * @example
 * ```ts ignore
 * import { launchBrowser } from "./browser.ts";
 * const { page, close } = await launchBrowser({ width: 390, height: 844 });
 * await close();
 * ```
 */
export async function launchBrowser(
  viewport: { width: number; height: number } = { width: 1280, height: 900 },
): Promise<HeadlessBrowser> {
  const profile = await Deno.makeTempDir({ prefix: "vllm-chill-chromium-" });
  // playwright passes the profile as --user-data-dir itself (it refuses the flag in `args`).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    viewport,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(20_000);
  return {
    context,
    page,
    close: async () => {
      await context.close();
      await Deno.remove(profile, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * The directory tests write screenshots to (`tmp/test-output/` in the
 * repository, or `VLLM_CHILL_TEST_OUTPUT`), created if needed.
 *
 * @example
 * ```ts ignore
 * import { testOutputDir } from "./browser.ts";
 * const dir = await testOutputDir();
 * ```
 */
export async function testOutputDir(): Promise<string> {
  const dir = Deno.env.get("VLLM_CHILL_TEST_OUTPUT") ?? new URL("../../tmp/test-output", import.meta.url).pathname;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}
