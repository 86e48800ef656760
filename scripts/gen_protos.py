"""Regenerate the Python package `emeterai.v1` from protos/ (pb2, grpc stubs and .pyi).

Run `python scripts/gen_protos.py` (or `make protos`). The output is committed; a test
regenerates into a temporary folder and fails when anything differs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE = Path("emeterai") / "v1"
PACKAGE_DOC = '"""Generated from protos/emeterai/v1 by scripts/gen_protos.py. Do not edit."""\n'


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write the generated package under out_dir/emeterai/v1."""
    well_known = str(resources.files("grpc_tools") / "_proto")
    plugin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in (out_dir / "emeterai", out_dir / PACKAGE):
        (package / "__init__.py").write_text(PACKAGE_DOC)


def main() -> None:
    target = ROOT / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(Path(tmp) / PACKAGE, target)
        shutil.copy(Path(tmp) / "emeterai" / "__init__.py", ROOT / "emeterai" / "__init__.py")
    print(f"generated {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
