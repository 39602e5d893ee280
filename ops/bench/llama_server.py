"""llama.cpp's own HTTP server, built once from the source inside the `llama-cpp-python` sdist.

    python -m ops.bench.llama_server build        # build (minutes) and print the binary's path

What a user would run instead of qfleet on a CPU is llama.cpp's server with parallel slots and
continuous batching, not the Python binding one request at a time; the benchmark measures that.
The sdist from PyPI carries llama.cpp's source in `vendor/llama.cpp`. The build names its SIMD
level explicitly: GGML_NATIVE builds have died with SIGILL on machines whose CPU differed from
the build host's, so the ISA is read from /proc/cpuinfo and set as AVX2 or AVX-512 flags (with
VNNI, VBMI and BF16 where the CPU has them). The binary is cached under
~/.cache/qfleet/llama-server/<isa>/ (e.g. `avx512-vnni-vbmi-bf16`) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from qfleet.workers.engine.cache import default_cache_root

SDIST = "llama-cpp-python"


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


# AVX-512 extensions llama.cpp has kernels for, by their /proc/cpuinfo flag and ggml's option.
_AVX512_EXTRAS = {
    "avx512_vnni": "AVX512_VNNI",
    "avx512vbmi": "AVX512_VBMI",
    "avx512_bf16": "AVX512_BF16",
}


def cpu_isa() -> str:
    """`avx512` (+ `-vnni`, `-vbmi`, `-bf16` where present), else `avx2`, else `base`."""
    flags = _cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        extras = [o[len("AVX512_") :].lower() for f, o in _AVX512_EXTRAS.items() if f in flags]
        return "-".join(["avx512", *extras])
    if {"avx2", "fma", "f16c"} <= flags:
        return "avx2"
    return "base"


def _cmake_flags(isa: str) -> list[str]:
    """Explicit SIMD options for `isa` (never GGML_NATIVE), e.g. `avx512-vnni-bf16`."""
    base, *extras = isa.split("-")
    on = {"base": [], "avx2": ["AVX", "AVX2", "FMA", "F16C"]}
    on["avx512"] = [*on["avx2"], "AVX512"]
    wanted = on[base] + [f"AVX512_{extra.upper()}" for extra in extras]
    flags = ["-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DCMAKE_BUILD_TYPE=Release",
             "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
             "-DBUILD_SHARED_LIBS=OFF"]  # fmt: skip
    every = ["AVX", "AVX2", "FMA", "F16C", "AVX512", *_AVX512_EXTRAS.values()]
    return flags + [f"-DGGML_{name}={'ON' if name in wanted else 'OFF'}" for name in every]


def server_dir(isa: str | None = None) -> Path:
    """The cache folder of the built server for this CPU's ISA."""
    return default_cache_root() / "llama-server" / (isa or cpu_isa())


def ensure_server(log: Path | None = None) -> Path:
    """The path of a built `llama-server`, building it first when it is not cached."""
    isa = cpu_isa()
    out = server_dir(isa)
    binary = out / "llama-server"
    if binary.is_file():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             "--dest", str(work), SDIST],
            check=True, capture_output=True,
        )  # fmt: skip
        [archive] = work.glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        [source] = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        build = work / "build"
        sink = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-G", "Ninja",
                            *_cmake_flags(isa)], check=True, stdout=sink, stderr=sink)  # fmt: skip
            jobs = str(os.cpu_count() or 1)
            subprocess.run(["cmake", "--build", str(build), "--target", "llama-server",
                            "-j", jobs], check=True, stdout=sink, stderr=sink)  # fmt: skip
        finally:
            if log:
                sink.close()  # type: ignore[union-attr]
        [built] = build.rglob("llama-server")
        shutil.copy2(built, binary)
        version = archive.name.removeprefix("llama_cpp_python-").removesuffix(".tar.gz")
        (out / "build.json").write_text(json.dumps({"sdist": version, "isa": isa}))
    return binary


class LlamaServer:
    """A running `llama-server` on loopback with `slots` parallel slots; stop it with `stop`."""

    def __init__(self, gguf: Path, slots: int, threads: int, ctx_per_slot: int = 1024) -> None:
        from ops.localfleet import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [str(ensure_server()), "-m", str(gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "-np", str(slots), "-c", str(ctx_per_slot * slots),
               "-t", str(threads), "-tb", str(threads), "-cb", "--no-webui"]  # fmt: skip
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 300) -> None:
        due = time.monotonic() + timeout
        while time.monotonic() < due:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError("llama-server did not become ready")

    def chat(self, prompt: str, max_tokens: int) -> int:
        """One greedy chat completion; returns the completion's token count."""
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                "temperature": 0.0, "cache_prompt": False}  # fmt: skip
        request = urllib.request.Request(
            f"{self.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=3600) as reply:
            return int(json.load(reply)["usage"]["completion_tokens"])

    def peak_rss_mb(self) -> float:
        """The server process's peak resident memory."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 0)
        return float("nan")

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main() -> int:
    """`build`: build the server unless cached and print its path."""
    parser = argparse.ArgumentParser(description="llama.cpp server for the benchmark")
    parser.add_argument("action", choices=["build"])
    parser.add_argument("--log", type=Path, help="write the compiler's output here")
    args = parser.parse_args()
    print(ensure_server(args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
