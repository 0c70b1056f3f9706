/** Pieces of ZIP archives the file tests build by hand (PKWARE's APPNOTE.TXT). */

/** The end of central directory record: `count` entries, a directory of `size` bytes at `offset`, no comment. */
export function zipEnd(count: number, size: number, offset: number): Buffer {
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(size, 12);
  end.writeUInt32LE(offset, 16);
  return end;
}
