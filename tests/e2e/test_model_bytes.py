"""extension/model_bytes.js: a model downloaded into fixed-size chunks reads back as the file, across chunk edges."""

from __future__ import annotations

import random

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


def test_views_read_the_file_whatever_chunks_they_cross(browser):
    rnd = random.Random(11)
    data = [rnd.randrange(256) for _ in range(1000)]
    chunk = 64
    ranges = [(0, 16), (60, 8), (64, 64), (100, 300), (0, 1000), (990, 50), (1000, 4), (rnd.randrange(900), 77)]
    page = browser.context.new_page()
    try:
        page.goto(browser.url("build.json"))
        got = page.evaluate(SCRIPT, [data, chunk, ranges])
    finally:
        page.close()
    assert got["size"] == len(data)
    assert got["chunks"] == [chunk] * 15 + [len(data) - 15 * chunk]  # the last one no longer than the file's end
    for (offset, n), view in zip(ranges, got["views"], strict=True):
        assert view == data[offset:offset + n], (offset, n)  # past the end: clipped
    assert got["calls"][0] == [0, len(data)] and got["calls"][-1] == [len(data), len(data)]
