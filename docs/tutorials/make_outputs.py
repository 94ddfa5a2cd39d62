"""Run every tutorial script in full and save what it prints, for the documentation pages to show.

    python docs/tutorials/make_outputs.py                 # all of them (a few minutes on 2 CPU cores)
    python docs/tutorials/make_outputs.py train_online    # one

Each output file ``docs/tutorials/output/NAME.txt`` starts with the SHA-256 of the script it came from;
``tests/test_docs.py`` fails when a script changed and its output was not made again.
"""
import hashlib
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = ("train_online", "custom_neuron", "skip_connections", "compare_engines", "nir_export")


def script_hash(name: str) -> str:
    """The first 16 hex digits of the SHA-256 of ``NAME.py``."""
    return hashlib.sha256((HERE / f"{name}.py").read_bytes()).hexdigest()[:16]


def header(name: str) -> str:
    """The first line of an output file: the command and the script's hash."""
    return f"$ python docs/tutorials/{name}.py    # output of the script with sha256 {script_hash(name)}"


def main(names) -> int:
    (HERE / "output").mkdir(exist_ok=True)
    for name in names or SCRIPTS:
        if name not in SCRIPTS:
            raise SystemExit(f"unknown tutorial {name!r}; one of {SCRIPTS}")
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"{name}.py failed:\n{result.stderr}")
        (HERE / "output" / f"{name}.txt").write_text(header(name) + "\n" + result.stdout)
        print(f"{name}: {len(result.stdout.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
