"""``import skdarts`` stays light: heavy libraries load when they are used."""

import subprocess
import sys

HEAVY = ("ot", "matplotlib", "dask", "onnx", "onnxruntime", "accelerate")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_import_skdarts_loads_no_heavy_library():
    loaded = _modules_after("import skdarts")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_command_help_loads_no_heavy_library():
    loaded = _modules_after(
        "from skdarts.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\n"
        "except SystemExit:\n    pass"
    )
    assert not loaded & {*HEAVY, "torch", "sklearn", "skorch"}


def test_public_names_still_resolve():
    import skdarts

    for name in skdarts.__all__:
        assert getattr(skdarts, name) is not None, name
    assert skdarts.data.load_image_folder is skdarts.load_image_folder
    assert "SupernetSearchClassifier" in dir(skdarts)


def test_zoo_list_and_show_load_no_heavy_library():
    # Listing the zoo reads JSON only: torch, sklearn, skorch, POT and
    # matplotlib load when a network is built or trained, not before.
    from skdarts.zoo import SupernetZoo

    name = SupernetZoo.default().keys()[0]
    heavy = {*HEAVY, "torch", "sklearn", "skorch"}
    for argv in (
        ["zoo", "list"],
        ["zoo", "show", name],
        ["zoo", "show", name, "--json"],
    ):
        loaded = _modules_after(
            f"from skdarts.cli import main\nassert main({argv!r}) in (0, None)"
        )
        top = {m.split(".")[0] for m in loaded}
        assert not top & heavy, (argv, sorted(top & heavy))
