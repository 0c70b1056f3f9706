/** Paths as the file readers take them, and exact reads of a file's bytes. */
import type { FileHandle } from 'node:fs/promises';
import { ArgumentError, describe, FormatError } from './errors.js';

/** A file path as `fs` takes it: a string or a file: URL (not a descriptor number, nor anything else). */
export function checkPath(value: unknown): string | URL {
  if (typeof value === 'string' || value instanceof URL) return value;
  throw new ArgumentError(`path must be a string or a URL; got ${describe(value)}`);
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
