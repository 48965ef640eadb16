"""Hardware sampling: a background thread writing crash-safe Parquet segments.

A :class:`HardwareSampler` measures the machine (CPU, memory, disk and
network rates), the process tree of the run (the wrapped child of
``gitxp start`` or the calling process of the API) and every NVIDIA GPU
through NVML. Samples are kept in memory only until the next flush: every
``flush_every`` seconds (never more than 2 s, the crash-safety promise in
the README) they are written as a new ``hardware-<seq>.parquet`` segment in
the staging directory, through a temporary name and ``os.replace`` so a
crash never leaves half a file. :mod:`gitxp.run.hardware_parquet` writes
them and merges them into the experiment's ``hardware.parquet``.

Column types: ``timestamp`` is ``timestamp[us, tz=UTC]``; every other
column is float64, byte counts included, so that a quantity that cannot be
read (first rate sample, a process that is gone, a GPU that fell off the
bus) is NaN rather than a made-up zero. ``proc_cpu_percent`` is percent of
one core summed over the process tree (400 means four busy cores), like
``top``.

Sampling is optional work: it never raises into the host program. A failure
prints at most one ``gitxp: hardware sampling ...`` line on stderr. A
machine without an NVIDIA driver simply has no ``gpu<i>_*`` columns (silent:
that is the normal case for a laptop); a driver that errors is one warning.

psutil and pynvml are imported inside the thread, never at import time, so
``import gitxp`` stays fast; segments are written without pyarrow
(:mod:`gitxp.store.plainparquet`), which only merging several needs.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["HardwareSampler", "gpu_info", "SEGMENT_GLOB"]

#: Name pattern of the segments a sampler writes into its ``out_dir``.
SEGMENT_GLOB = "hardware-*.parquet"
_SEGMENT_RE = re.compile(r"^hardware-(\d+)\.parquet$")
#: The longest a sample may wait on disk: the README's crash-safety promise.
_MAX_FLUSH_S = 2.0

#: Machine and process columns, in the order they appear in hardware.parquet.
BASE_COLUMNS = (
    "cpu_percent",
    "memory_used_bytes",
    "memory_available_bytes",
    "memory_percent",
    "proc_cpu_percent",
    "proc_rss_bytes",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "net_sent_bytes_per_s",
    "net_recv_bytes_per_s",
)
#: Per-GPU column suffixes: ``gpu<i>_<suffix>``.
GPU_FIELDS = (
    "util_percent",
    "memory_used_bytes",
    "memory_total_bytes",
    "temperature_c",
    "power_w",
    "sm_clock_mhz",
)

_NAN = math.nan


def _warn(message: str) -> None:
    """One stderr line; never raises (stderr may be closed in a daemon)."""
    try:
        print(f"gitxp: hardware sampling {message}", file=sys.stderr, flush=True)
    except Exception:  # pragma: no cover - stderr gone
        pass


def _nvidia_driver_absent() -> bool:
    """Cheap pre-check so machines without NVIDIA hardware skip importing pynvml.

    On Linux the driver exposes ``/proc/driver/nvidia`` (also inside
    containers run with the NVIDIA runtime) and ``/dev/nvidiactl``; when
    neither exists NVML cannot work, and importing pynvml (~15 ms) is waste.
    Elsewhere we cannot tell cheaply, so we let NVML decide.
    """
    if not sys.platform.startswith("linux"):
        return False
    return not (os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidiactl"))


def _nvml_text(value: Any) -> str:
    """NVML returns bytes in old bindings and str in new ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def gpu_info() -> list[dict[str, Any]]:
    """Describe the NVIDIA GPUs for environment.yaml.

    Returns:
        One dict per GPU: ``index``, ``name``, ``uuid``, ``memory_total_bytes``,
        ``driver_version`` and ``cuda_version`` (the CUDA version the driver
        supports, from ``nvmlSystemGetCudaDriverVersion``, as ``"12.4"``).
        An empty list when pynvml is missing, there is no driver or no GPU,
        or NVML fails: environment capture must never fail because of a GPU.
    """
    if _nvidia_driver_absent():
        return []
    try:
        import pynvml
    except Exception:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    gpus: list[dict[str, Any]] = []
    try:
        driver = _nvml_text(pynvml.nvmlSystemGetDriverVersion())
        try:
            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
            cuda: str | None = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:
            cuda = None
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            info: dict[str, Any] = {"index": i, "name": _nvml_text(pynvml.nvmlDeviceGetName(h))}
            try:
                info["uuid"] = _nvml_text(pynvml.nvmlDeviceGetUUID(h))
            except Exception:
                pass
            try:
                info["memory_total_bytes"] = int(pynvml.nvmlDeviceGetMemoryInfo(h).total)
            except Exception:
                info["memory_total_bytes"] = None
            info["driver_version"] = driver
            info["cuda_version"] = cuda
            gpus.append(info)
    except Exception:
        pass
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return gpus


class _Gpus:
    """NVML access for the sampler thread: init once, NaN for what fails.

    Fields that a GPU does not support (power on some boards) are remembered
    and not queried again; any other NVML error marks that GPU lost, and its
    columns are NaN from then on (a GPU that falls off the bus must not stop
    the run or the other columns).
    """

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        self.lost: set[int] = set()
        self.unsupported: set[tuple[int, str]] = set()
        self.warning: str | None = None
        if _nvidia_driver_absent():
            return
        try:
            import pynvml
        except Exception:
            return
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            if type(exc).__name__ not in ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded"):
                self.warning = f"found no usable GPU ({exc}); recording CPU only"
            return
        self.nvml = pynvml
        try:
            self.handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
        except Exception as exc:
            self.warning = f"could not list GPUs ({exc}); recording CPU only"
            self.handles = []

    def sample(self, row: dict[str, float]) -> None:
        nv = self.nvml
        for i, h in enumerate(self.handles):
            if i in self.lost:
                for f in GPU_FIELDS:
                    row[f"gpu{i}_{f}"] = _NAN
                continue
            cache: dict[str, Any] = {}
            for f in GPU_FIELDS:
                key = f"gpu{i}_{f}"
                if (i, f) in self.unsupported:
                    row[key] = _NAN
                    continue
                try:
                    row[key] = self._read(nv, h, f, cache)
                except Exception as exc:
                    row[key] = _NAN
                    if type(exc).__name__ == "NVMLError_NotSupported":
                        self.unsupported.add((i, f))
                    else:
                        self.lost.add(i)
                        self.warning = f"lost GPU {i} ({exc}); its columns are NaN from now on"
                        for g in GPU_FIELDS:
                            row[f"gpu{i}_{g}"] = _NAN
                        break

    @staticmethod
    def _read(nv: Any, h: Any, field: str, cache: dict[str, Any]) -> float:
        if field == "util_percent":
            return float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        if field in ("memory_used_bytes", "memory_total_bytes"):
            if "mem" not in cache:
                cache["mem"] = nv.nvmlDeviceGetMemoryInfo(h)
            return float(cache["mem"].used if field == "memory_used_bytes" else cache["mem"].total)
        if field == "temperature_c":
            return float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        if field == "power_w":
            return nv.nvmlDeviceGetPowerUsage(h) / 1000.0  # milliwatts
        if field == "sm_clock_mhz":
            return float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        raise KeyError(field)

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.nvml = None


class HardwareSampler:
    """Samples the machine, a process tree and the GPUs in a daemon thread.

    Args:
        out_dir: staging directory that receives ``hardware-<seq:06d>.parquet``
            segments (created if missing). Numbering continues after the
            segments already there, so a resumed run appends.
        interval: seconds between samples (``--hardware-interval``).
        pid: root of the process tree whose CPU and RSS are summed into
            ``proc_*`` (the process and all its descendants); default: this
            process. Change it with :meth:`set_pid` once the child exists.
        flush_every: seconds between segment writes; capped at 2 s.

    The sampler never raises into the host after construction: errors in
    the thread become at most one stderr warning.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        interval: float = 1.0,
        pid: int | None = None,
        flush_every: float = 2.0,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"hardware interval must be positive, got {interval!r}")
        self.out_dir = Path(out_dir)
        self.interval = float(interval)
        self.flush_every = min(float(flush_every), _MAX_FLUSH_S)
        self._pid = os.getpid() if pid is None else int(pid)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exit_hook: Any = None
        self._warned = False
        self._rows: list[dict[str, float]] = []
        self._times: list[int] = []
        self._seq = self._next_seq()
        self._procs: dict[int, Any] = {}
        self._proc_children = sys.platform.startswith("linux")
        self._prev: tuple[float, Any, Any] | None = None
        self._first = True
        self._cpu_time = 0.0
        self.samples = 0
        self.segments_written = 0
        self.gpu_count = 0

    # -- public -----------------------------------------------------------

    def set_pid(self, pid: int) -> None:
        """Measure the tree rooted at ``pid`` from the next sample on."""
        self._pid = int(pid)

    def start(self) -> None:
        """Start the daemon thread; the first sample is taken at once."""
        if self._thread is not None:
            return
        from gitxp import shutdown

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="gitxp-hardware", daemon=True)
        self._thread.start()
        # A host that never calls stop() still gets its last samples written,
        # and pyarrow is not torn down under a running daemon thread.
        self._exit_hook = shutdown.register(self.stop)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, which takes a final sample and flushes it. Idempotent."""
        import atexit

        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)

    @property
    def cpu_time_s(self) -> float:
        """CPU seconds the sampler thread has used (``time.thread_time``)."""
        return self._cpu_time

    def __enter__(self) -> HardwareSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- thread -----------------------------------------------------------

    def _next_seq(self) -> int:
        seq = 0
        try:
            for entry in os.scandir(self.out_dir):
                m = _SEGMENT_RE.match(entry.name)
                if m:
                    seq = max(seq, int(m.group(1)) + 1)
        except OSError:
            pass
        return seq

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            _warn(message)

    def _run(self) -> None:
        t0 = time.thread_time()
        gpus: _Gpus | None = None
        try:
            import psutil

            gpus = _Gpus()
            self.gpu_count = len(gpus.handles)
            psutil.cpu_percent(interval=None)  # prime: the first call has no reference
            last_flush = time.monotonic()
            failures = 0
            while True:
                stopping = self._stop.is_set()
                try:
                    self._sample(psutil, gpus)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    self._warn_once(f"failed ({type(exc).__name__}: {exc}); continuing")
                    if failures >= 10:
                        self._warn_once("keeps failing; stopped")
                        break
                if gpus.warning:
                    self._warn_once(gpus.warning)
                    gpus.warning = None
                now = time.monotonic()
                if stopping or now - last_flush >= self.flush_every:
                    self._flush()
                    last_flush = now
                self._cpu_time = time.thread_time() - t0
                if stopping:
                    break
                self._stop.wait(self.interval)
        except Exception as exc:
            self._warn_once(f"stopped ({type(exc).__name__}: {exc})")
        finally:
            try:
                self._flush()
            except Exception as exc:
                self._warn_once(f"could not write its last samples ({exc})")
            if gpus is not None:
                gpus.close()
            self._cpu_time = time.thread_time() - t0

    def _sample(self, psutil: Any, gpus: _Gpus) -> None:
        now = time.monotonic()
        stamp = time.time_ns() // 1000
        row: dict[str, float] = {}
        cpu = psutil.cpu_percent(interval=None)
        row["cpu_percent"] = _NAN if self._first else float(cpu)
        vm = psutil.virtual_memory()
        row["memory_used_bytes"] = float(vm.total - vm.available)
        row["memory_available_bytes"] = float(vm.available)
        row["memory_percent"] = float(vm.percent)
        self._sample_procs(psutil, row)
        disk = _safe(psutil.disk_io_counters)
        net = _safe(psutil.net_io_counters)
        prev = self._prev
        if prev is not None and now > prev[0]:
            dt = now - prev[0]
            row["disk_read_bytes_per_s"] = _rate(disk, prev[1], "read_bytes", dt)
            row["disk_write_bytes_per_s"] = _rate(disk, prev[1], "write_bytes", dt)
            row["net_sent_bytes_per_s"] = _rate(net, prev[2], "bytes_sent", dt)
            row["net_recv_bytes_per_s"] = _rate(net, prev[2], "bytes_recv", dt)
        else:
            for k in BASE_COLUMNS[6:]:
                row[k] = _NAN
        self._prev = (now, disk, net)
        gpus.sample(row)
        self._first = False
        self._rows.append(row)
        self._times.append(stamp)
        self.samples += 1

    def _sample_procs(self, psutil: Any, row: dict[str, float]) -> None:
        """Sum CPU% and RSS over the tree; cached Process objects keep cpu deltas."""
        try:
            root = self._procs.get(self._pid)
            if root is None:
                root = psutil.Process(self._pid)
            pids = _tree_pids(self._pid) if self._proc_children else None
            if pids is None:
                self._proc_children = False
                tree = [root, *root.children(recursive=True)]
            else:
                tree = [root]
                for pid in pids[1:]:
                    cached = self._procs.get(pid)
                    try:
                        tree.append(cached if cached is not None else psutil.Process(pid))
                    except Exception:  # exited between listing and opening
                        continue
        except Exception:
            row["proc_cpu_percent"] = _NAN
            row["proc_rss_bytes"] = _NAN
            self._procs.clear()
            return
        procs: dict[int, Any] = {}
        cpu = 0.0
        rss = 0.0
        new_only = True
        for p in tree:
            cached = self._procs.get(p.pid)
            # A cached object with the same pid may be a recycled pid: psutil
            # compares create times in ==, so reuse only the same process.
            if cached is not None and cached == p:
                p = cached
                fresh = False
            else:
                fresh = True
            try:
                with p.oneshot():
                    c = p.cpu_percent(interval=None)  # 0.0 on the first call: no reference yet
                    m = p.memory_info().rss
            except Exception:
                continue
            procs[p.pid] = p
            rss += m
            if not fresh:
                cpu += c
                new_only = False
        self._procs = procs
        row["proc_cpu_percent"] = _NAN if (new_only and procs) else cpu
        row["proc_rss_bytes"] = rss if procs else _NAN

    def _flush(self) -> None:
        """Write the samples since the last flush as one atomic segment."""
        if not self._rows:
            return
        rows, times = self._rows, self._times
        self._rows, self._times = [], []
        from gitxp.run.hardware_parquet import write_segment

        write_segment(self.out_dir, self._seq, rows, times)
        self._seq += 1
        self.segments_written += 1


def _tree_pids(pid: int) -> list[int] | None:
    """``pid`` and its descendants from ``/proc/<pid>/task/<tid>/children``.

    psutil's ``children(recursive=True)`` reads ``/proc/*/stat`` of every
    process on the machine (1.2 ms with 70 processes, far more on a busy
    node) to build a parent map; the kernel's children lists cost only the
    size of the tree. Returns None where the kernel lacks them
    (CONFIG_PROC_CHILDREN) so the caller falls back to psutil.
    """
    out = [pid]
    i = 0
    while i < len(out):
        p = out[i]
        i += 1
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            if p == pid:
                return None
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    out.extend(int(x) for x in f.read().split())
            except FileNotFoundError:
                if p == pid and not os.path.exists(f"/proc/{p}/task/{tid}"):
                    continue  # the thread exited meanwhile
                if p == pid:
                    return None
            except (OSError, ValueError):
                continue
    return out


def _safe(fn: Any) -> Any:
    """psutil counters that a container may not have (returns None, raises)."""
    try:
        return fn()
    except Exception:
        return None


def _rate(cur: Any, prev: Any, attr: str, dt: float) -> float:
    if cur is None or prev is None:
        return _NAN
    delta = getattr(cur, attr) - getattr(prev, attr)
    # Counters wrap or reset (a NIC going away): a negative rate is noise.
    return delta / dt if delta >= 0 else _NAN
