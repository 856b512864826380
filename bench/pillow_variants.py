"""Pillow baseline for bench/variants.ts: the same four gallery outputs
(original re-encoded, medium fit 1600, thumb fit 400, game 50x50 centre crop),
JPEG quality 85, EXIF orientation applied, metadata dropped, all in memory.

    /usr/bin/python3 bench/pillow_variants.py <rounds> <photo>...

Prints one JSON line: photos, seconds, per-photo latencies in ms.
"""
import io
import json
import sys
import time

from PIL import Image, ImageOps


def encode(im):
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getbuffer().nbytes


def variants(path):
    with Image.open(path) as src:
        im = ImageOps.exif_transpose(src)
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            flat = Image.new("RGB", im.size, (255, 255, 255))
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        elif im.mode != "RGB":
            im = im.convert("RGB")
        sizes = {"original": encode(im)}
        medium = im.copy()
        medium.thumbnail((1600, 1600), Image.LANCZOS)
        sizes["medium"] = encode(medium)
        thumb = medium.copy()
        thumb.thumbnail((400, 400), Image.LANCZOS)
        sizes["thumb"] = encode(thumb)
        sizes["game"] = encode(ImageOps.fit(thumb, (50, 50), Image.LANCZOS))
        return sizes


def main():
    rounds = int(sys.argv[1])
    photos = sys.argv[2:]
    variants(photos[0])  # warm-up: codecs loaded, as in a running server
    latencies = []
    started = time.perf_counter()
    for _ in range(rounds):
        for p in photos:
            t = time.perf_counter()
            variants(p)
            latencies.append((time.perf_counter() - t) * 1000)
    seconds = time.perf_counter() - started
    print(json.dumps({"photos": len(latencies), "seconds": seconds, "latenciesMs": latencies}))


if __name__ == "__main__":
    main()
