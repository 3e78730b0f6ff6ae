// A model file held as fixed-size chunks, and its download. No single ArrayBuffer holds the file: browsers cap
// one (an 8B model's 4-5 GB fails to load as one), and joining streamed parts into one would hold the file twice
// at its peak. The engine reads the header through `view` and hands each tensor's view to WebGPU
// (engine/gpu/browser.py's ModelBytesSource), so weights go from here to the GPU without entering the wasm heap;
// only a tensor that straddles two chunks is copied, once, into a buffer of its own.

export const CHUNK_BYTES = 64 << 20; // a multiple of 4: GGUF tensors start 32-byte aligned, so pieces stay aligned

export class ModelBytes {
  constructor(chunks, size, chunkBytes) {
    this.chunks = chunks; // Uint8Arrays of chunkBytes each, the last one partly filled
    this.size = size;
    this.chunkBytes = chunkBytes;
  }

  // Bytes offset .. offset + n (clipped to the file) as a Uint8Array: a view where one chunk holds them.
  view(offset, n) {
    n = Math.max(0, Math.min(n, this.size - offset));
    if (n === 0) return new Uint8Array(0);
    const first = Math.floor(offset / this.chunkBytes);
    const at = offset - first * this.chunkBytes;
    if (at + n <= this.chunkBytes) return this.chunks[first].subarray(at, at + n);
    const out = new Uint8Array(n);
    for (let done = 0; done < n; ) {
      const i = Math.floor((offset + done) / this.chunkBytes);
      const start = offset + done - i * this.chunkBytes;
      const piece = this.chunks[i].subarray(start, Math.min(this.chunkBytes, start + n - done));
      out.set(piece, done);
      done += piece.length;
    }
    return out;
  }
}

// Fetch `url` into a ModelBytes, calling announce(done, total) every few MB; total is the response's
// Content-Length (or what has come so far, where it has none).
export async function download(url, announce, chunkBytes = CHUNK_BYTES) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the model could not be read (${url}: HTTP ${response.status})`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let done = 0;
  let shown = 0;
  announce(0, total || 1);
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    for (let used = 0; used < value.length; ) {
      const at = done % chunkBytes;
      // each chunk chunkBytes long, the last one what Content-Length leaves
      if (at === 0) chunks.push(new Uint8Array(total > done ? Math.min(chunkBytes, total - done) : chunkBytes));
      const n = Math.min(value.length - used, chunkBytes - at);
      if (at + n > chunks[chunks.length - 1].length) {
        // more bytes than Content-Length said: a whole chunk after all
        const grown = new Uint8Array(chunkBytes);
        grown.set(chunks[chunks.length - 1]);
        chunks[chunks.length - 1] = grown;
      }
      chunks[chunks.length - 1].set(value.subarray(used, used + n), at);
      used += n;
      done += n;
    }
    if (done - shown > 4 << 20) {
      shown = done;
      announce(done, Math.max(total, done));
    }
  }
  announce(done, done);
  return new ModelBytes(chunks, done, chunkBytes);
}
