/** Paths as the file readers take them, and exact reads of a file's bytes. */
import type { FileHandle } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ArgumentError, describe, FormatError } from './errors.js';

/**
 * A file path as the file calls take it, checked and as a string: a string (not a descriptor
 * number, nor anything else), or a file: URL, as its path. What `fs` would refuse with a
 * TypeError of its own (a URL of another scheme or of another host, a NUL byte) is an
 * ArgumentError before any work.
 */
export function checkPath(value: unknown): string {
  if (value instanceof URL) {
    let path: string;
    try {
      path = fileURLToPath(value);
    } catch (err) {
      throw new ArgumentError(`path, a URL, must be a file: URL of this machine; got ${JSON.stringify(value.href)} (${(err as Error).message})`);
    }
    return checkPath(path);
  }
  if (typeof value !== 'string') throw new ArgumentError(`path must be a string or a URL; got ${describe(value)}`);
  if (value.includes('\0')) throw new ArgumentError(`path must not hold a NUL character; got ${JSON.stringify(value)}`);
  return value;
}

/** `length` bytes of the file from byte `position`; a `FormatError` naming `what` where the file ends first. */
export async function readBytes(handle: FileHandle, position: number, length: number, what: string): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  for (let done = 0; done < length;) {
    const { bytesRead } = await handle.read(bytes, done, length - done, position + done);
    if (bytesRead === 0) throw new FormatError(`the file ended at byte ${position + done}, within ${what} (${length} bytes from ${position})`);
    done += bytesRead;
  }
  return bytes;
}
