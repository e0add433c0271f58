/**
 * A small server-sent events reader for tests: parses `event:`, `data:`,
 * `retry:` and comment lines from a fetch body and lets a test wait
 * (bounded) for the event it expects.
 *
 * @module
 */
import { within } from "../e2e/helpers.ts";

/**
 * One parsed SSE block.
 *
 * @example
 * ```ts
 * import type { SseBlock } from "./sse_client.ts";
 * const block: SseBlock = { event: "snapshot", data: "{}", comment: null, retry: null };
 * ```
 */
export interface SseBlock {
  /** `event:` (default "message"), or null for a block without data. */
  event: string | null;
  data: string;
  /** Text of a comment line (`: keepalive`), or null. */
  comment: string | null;
  retry: number | null;
}

/**
 * An open stream.
 *
 * @example
 * ```ts ignore
 * import { openEvents } from "./sse_client.ts";
 * const events = await openEvents("http://127.0.0.1:8080/admin/events");
 * await events.next((b) => b.event === "snapshot", 5000, "a snapshot");
 * await events.close();
 * ```
 */
export interface SseStream {
  /** The HTTP response (status, headers). */
  response: Response;
  /** Every block so far. */
  blocks: SseBlock[];
  /** Resolves with the first block after index `from` (default: all seen so far) matching `match`. */
  next(match: (block: SseBlock) => boolean, timeoutMs: number, what: string, from?: number): Promise<SseBlock>;
  /** Resolves when the server ends the stream (bounded). */
  ended(timeoutMs: number): Promise<void>;
  /** Aborts the request and waits for the reader to stop. */
  close(): Promise<void>;
}

/**
 * Opens `url` and reads it in the background.
 *
 * @example
 * ```ts ignore
 * import { openEvents } from "./sse_client.ts";
 * const events = await openEvents("http://127.0.0.1:8080/admin/events?token=t");
 * ```
 */
export async function openEvents(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const abort = new AbortController();
  const response = await fetch(url, { headers, signal: abort.signal });
  const blocks: SseBlock[] = [];
  let tick = Promise.withResolvers<void>();
  const wake = () => {
    tick.resolve();
    tick = Promise.withResolvers<void>();
  };
  let done = false;
  const reader = response.body?.getReader();
  const reading = (async () => {
    if (!reader) return;
    const decoder = new TextDecoder();
    let rest = "";
    try {
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        rest += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = rest.indexOf("\n\n")) >= 0) {
          blocks.push(parseBlock(rest.slice(0, end)));
          rest = rest.slice(end + 2);
        }
        wake();
      }
    } catch { /* cancelled or reset */ }
    done = true;
    wake();
  })();
  return {
    response,
    blocks,
    next: (match, timeoutMs, what, from = blocks.length) =>
      within(
        (async () => {
          for (let i = from;; i++) {
            while (i >= blocks.length) {
              if (done) throw new Error(`the stream ended before ${what}`);
              await tick.promise;
            }
            if (match(blocks[i])) return blocks[i];
          }
        })(),
        timeoutMs,
        what,
      ),
    ended: (timeoutMs) =>
      within(
        (async () => {
          while (!done) await tick.promise;
        })(),
        timeoutMs,
        "the end of the stream",
      ),
    close: async () => {
      abort.abort();
      // An aborted fetch does not always end a read under way: cancel the reader too.
      await reader?.cancel().catch(() => {});
      await reading;
    },
  };
}

function parseBlock(text: string): SseBlock {
  const block: SseBlock = { event: null, data: "", comment: null, retry: null };
  const data: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) block.comment = line.slice(1).trim();
    else if (line.startsWith("event: ")) block.event = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
    else if (line.startsWith("retry: ")) block.retry = Number(line.slice(7));
  }
  if (data.length) {
    block.data = data.join("\n");
    block.event ??= "message";
  }
  return block;
}
