"""extension/model_bytes.js: a model downloaded into fixed-size chunks reads back as the file, across chunk edges."""

from __future__ import annotations

import random

import pytest

# In an extension page of the test browser: the module's download of a blob (its Content-Length known) with
# tiny chunks, then the views asked for, as lists of bytes, and every progress call.
SCRIPT = """async ([data, chunkBytes, ranges]) => {
  const { download } = await import(chrome.runtime.getURL("model_bytes.js"));
  const url = URL.createObjectURL(new Blob([new Uint8Array(data)]));
  const calls = [];
  const bytes = await download(url, (done, total) => calls.push([done, total]), chunkBytes);
  const views = ranges.map(([offset, n]) => Array.from(bytes.view(offset, n)));
  return { size: bytes.size, chunks: bytes.chunks.map((c) => c.length), views, calls };
}"""


@pytest.mark.parametrize("size", [1000, 1024])  # a last chunk part-filled, and none
def test_views_read_the_file_whatever_chunks_they_cross(browser, size):
    rnd = random.Random(size)
    data = [rnd.randrange(256) for _ in range(size)]
    chunk = 64
    ranges = [(0, 16), (60, 8), (64, 64), (100, 300), (0, size), (size - 10, 50), (size, 4), (rnd.randrange(900), 77)]
    page = browser.context.new_page()
    try:
        page.goto(browser.url("build.json"))
        got = page.evaluate(SCRIPT, [data, chunk, ranges])
    finally:
        page.close()
    assert got["size"] == len(data)
    full = size // chunk
    assert got["chunks"] == [chunk] * full + ([size - full * chunk] if size % chunk else [])  # none past the end
    for (offset, n), view in zip(ranges, got["views"], strict=True):
        assert view == data[offset:offset + n], (offset, n)  # past the end: clipped
    assert got["calls"][0] == [0, len(data)] and got["calls"][-1] == [len(data), len(data)]
