"""The device CLI's contract with scripts: one exit-code table for `python -m edge_runtime` and
`siamface`, JSON Lines with --json, diagnostics through logging, and the bad inputs of issue 18 that
live in the CLI (outputs, boxes, batches, group and sideways photos, the embedding kept private).

Most cases call edge_runtime.cli.main in this process (a real bundle, real photos on disk, a few ms
each); the `siamface` forwarding and the quiet terminal are checked in real subprocesses.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamface.edge_runtime.cli import COMMANDS, main, parser
from siamface.edge_runtime.errors import EXIT_BAD_INPUT, EXIT_NO_MATCH, EXIT_OK, EXIT_USAGE
from test_edge_cli import SIAMFACE, photos, run  # noqa: F401 (photos is a fixture)

SIZE, N_ID = 64, 8
UPRIGHT = [2.0, 0, 0, 32, 0, -2.0, 0, 34, 0, 0, -2.0, 0]  # a frontal mean face in the crop


def write_fixed_bundle(out: Path, face_model, camera: list[float]) -> Path:
    """A real bundle whose model answers one fixed parameter vector (the camera given, mean shape) and
    the crop's mean colour as its embedding, so different photos score differently."""
    import tf_keras as keras

    from siamface.edge_runtime.params import Whitening
    from siamface.export.bundle import write_bundle
    from siamface.export.tflite import convert

    layout = face_model.layout(N_ID)
    params = np.zeros(layout.size, np.float32)
    params[:12] = camera
    pixels = keras.Input((SIZE, SIZE, 3))
    colour = keras.layers.GlobalAveragePooling2D()(pixels)
    fixed = keras.layers.Dense(layout.size, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(params))(colour)
    meta = {"variant": "fp32", "input": {"name": "pixels", "size": SIZE, "dtype": "float32"},
            "param_layout": layout.to_dict(),
            "whitening": Whitening(np.zeros(layout.size, np.float32), np.ones(layout.size, np.float32)).to_dict(),
            "verification": {"threshold": 0.9, "far": 0.05}}
    return write_bundle(out, convert(keras.Model(pixels, [fixed, colour]), "fp32"), meta, face_model, layout)


@pytest.fixture(scope="module")
def bundles(face_model, tmp_path_factory) -> dict[str, Path]:
    return {"upright": write_fixed_bundle(tmp_path_factory.mktemp("fixed-bundle") / "upright", face_model, UPRIGHT)}


@pytest.fixture()
def cli(capsys):
    """main(argv) in this process: (exit code, stdout lines, stderr lines); argparse's exit is a code too."""

    def call(*argv) -> tuple[int, list[str], list[str]]:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out.splitlines(), err.splitlines()

    return call


def one_error(result, *words: str) -> str:
    """Exit 3, stdout clean of text (JSON records allowed), one `error:` line on stderr holding the words."""
    code, _, err = result
    assert code == EXIT_BAD_INPUT and len(err) == 1 and err[0].startswith("error: "), (code, err)
    for word in words:
        assert str(word) in err[0], err[0]
    return err[0]


def records(lines: list[str]) -> list[dict]:
    """Every stdout line is one JSON object (JSON Lines)."""
    parsed = [json.loads(line) for line in lines]
    assert parsed and all(isinstance(r, dict) for r in parsed)
    return parsed


# -- one command list, one exit-code table -------------------------------------------------------------


def test_one_command_list_for_both_clis():
    from click.testing import CliRunner

    from siamface.cli.main import main as siamface

    sub = next(a for a in parser()._actions if a.dest == "command")
    assert list(sub.choices) == list(COMMANDS)
    assert set(COMMANDS) <= set(siamface.commands)
    for help_text in (parser().format_help(), CliRunner().invoke(siamface, ["--help"]).output):
        assert "exit codes: 0 ok" in help_text and "3 bad input or bad bundle" in help_text


def exit_code_table(b: dict, photos: Path, tmp: Path) -> dict[str, list[tuple[int, list]]]:
    """Per command: (expected exit code, arguments) for ok, no match, usage error and bad input."""
    up, face, grey, noise = b["upright"], photos / "astronaut.jpg", photos / "gray.png", photos / "noise.png"
    gallery = ["--gallery", tmp / "g.db"]
    return {
        "enroll": [(EXIT_OK, ["enroll", "astronaut", face, "--model", up, *gallery]),
                   (EXIT_USAGE, ["enroll", "x", face, "--model", up, "--threads", "0", *gallery]),
                   (EXIT_BAD_INPUT, ["enroll", "x", noise, "--model", up, *gallery])],
        "reconstruct": [(EXIT_OK, ["reconstruct", face, "--model", up, "--out", tmp / "r"]),
                        (EXIT_USAGE, ["reconstruct", face, "--model", up]),
                        (EXIT_BAD_INPUT, ["reconstruct", noise, "--model", up, "--out", tmp / "r"])],
        "verify": [(EXIT_OK, ["verify", face, face, "--model", up, "--exit-code"]),
                   (EXIT_NO_MATCH, ["verify", face, grey, "--model", up, "--threshold", "1", "--exit-code"]),
                   (EXIT_OK, ["verify", face, grey, "--model", up, "--threshold", "1"]),
                   (EXIT_OK, ["verify", face, "--person", "astronaut", "--model", up, *gallery, "--exit-code"]),
                   (EXIT_USAGE, ["verify", face, "--model", up]),
                   (EXIT_USAGE, ["verify", face, face, "--person", "astronaut", "--model", up, *gallery]),
                   (EXIT_BAD_INPUT, ["verify", face, "--person", "nobody", "--model", up, *gallery]),
                   (EXIT_BAD_INPUT, ["verify", face, noise, "--model", up])],
        "identify": [(EXIT_OK, ["identify", face, "--model", up, *gallery, "--exit-code"]),
                     (EXIT_NO_MATCH, ["identify", grey, "--model", up, *gallery, "--threshold", "1", "--exit-code"]),
                     (EXIT_USAGE, ["identify", face, "--model", up, "-k", "0", *gallery]),
                     (EXIT_BAD_INPUT, ["identify", face, "--model", up, "--gallery", tmp / "none.db"])],
        "gallery": [(EXIT_OK, ["gallery", "list", "--model", up, *gallery]),
                    (EXIT_USAGE, ["gallery", "rename", "--model", up, *gallery]),
                    (EXIT_BAD_INPUT, ["gallery", "remove", "nobody", "--model", up, *gallery])],
        "bench": [(EXIT_OK, ["bench", up, "--threads", "1", "--runs", "2"]),
                  (EXIT_USAGE, ["bench", up, "--runs", "0"]),
                  (EXIT_BAD_INPUT, ["bench", up, "--threads", "1", "--runs", "2", "--image", noise])],
        "check": [(EXIT_OK, ["check", "--model", up]),
                  (EXIT_USAGE, ["check", "--model", up, "--threads", "0"]),
                  (EXIT_BAD_INPUT, ["check", "--model", tmp / "nowhere"])],
    }


def test_exit_code_table_per_command(bundles, photos, tmp_path, cli):
    table = exit_code_table(bundles, photos, tmp_path)
    assert sorted(table) == sorted(COMMANDS)
    for command, cases in table.items():  # enroll first: identify needs the gallery
        for expected, argv in cases:
            code, out, err = cli(*argv)
            assert code == expected, (command, argv, code, err)
            if expected == EXIT_BAD_INPUT:
                one_error((code, out, err))
            if expected == EXIT_USAGE:
                assert err[0].startswith(f"usage: python -m edge_runtime {command}") and "error: " in err[-1], err


def test_siamface_uses_the_same_table(bundles, photos, tmp_path):
    """The forwarded commands keep their codes (3, not click's 1) and say `siamface` in usage lines;
    a training-side SiamfaceError is one line and exit 3 too."""
    face, up = photos / "astronaut.jpg", bundles["upright"]
    program = [str(SIAMFACE)]
    assert run("verify", face, photos / "gray.png", "--model", up, "--threshold", "1", "--exit-code",
               program=program).returncode == EXIT_NO_MATCH
    usage = run("check", "--model", up, "--threads", "0", program=program)
    assert usage.returncode == EXIT_USAGE and "usage: siamface check" in usage.stderr
    bad = run("reconstruct", photos / "empty.jpg", "--model", up, "--out", tmp_path / "o", program=program)
    assert bad.returncode == EXIT_BAD_INPUT and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    training = run("data", "import", tmp_path / "nowhere", "--out", tmp_path / "d", program=program)
    assert training.returncode == EXIT_BAD_INPUT, training.stderr
    assert training.stderr.count("\n") == 1 and training.stderr.startswith("error: "), training.stderr


def test_device_commands_print_no_tensorflow_or_native_log_lines(bundles, photos):
    """stderr is empty on success: no TensorFlow/absl lines, no LiteRT XNNPACK notice, nothing imported."""
    probe = ("import sys; from cli.main import main\n"
             "try: main(sys.argv[1:])\n"
             "except SystemExit as e: assert e.code == 0, e.code\n"
             "assert not {'tensorflow', 'absl', 'tf_keras'} & set(sys.modules), 'TensorFlow was imported'")
    for args in (("check", "--model", bundles["upright"]),
                 ("verify", photos / "astronaut.jpg", photos / "gray.png", "--model", bundles["upright"])):
        result = run("-c", probe, *args, program=[sys.executable])
        assert result.returncode == 0 and result.stderr == "", result.stderr


# -- JSON Lines and logging ----------------------------------------------------------------------------


def test_json_lines_on_every_command(bundles, photos, tmp_path, cli):
    up, face, gallery = bundles["upright"], photos / "astronaut.jpg", ["--gallery", tmp_path / "g.db"]
    (enrolled,) = records(cli("enroll", "astronaut", face, "--model", up, *gallery, "--json")[1])
    assert enrolled["enrolled"] == "astronaut" and enrolled["images"] == 1 and enrolled["faces"][0]["face"] == 0
    (listed,) = records(cli("gallery", "list", "--model", up, *gallery, "--json")[1])
    assert listed["name"] == "astronaut" and listed["images"] == 1 and "T" in listed["enrolled_at"]
    (found,) = records(cli("identify", face, "--model", up, *gallery, "--json")[1])
    assert found["best"] == "astronaut" and found["candidates"][0][1] == pytest.approx(1.0, abs=1e-4)
    (verdict,) = records(cli("verify", face, face, "--model", up, "--json")[1])
    assert verdict["same_person"] is True and len(verdict["faces"]) == 2
    (checked,) = records(cli("check", "--model", up, "--json")[1])
    assert checked == {"bundle": str(up), "variant": "fp32", "hashes": "ok", "interpreter": "ai-edge-litert",
                       "inference": "ok"}
    rows = records(cli("bench", up, "--threads", "1", "2", "--runs", "2", "--json")[1])
    assert [(r["bundle"], r["threads"]) for r in rows] == [("fp32", 1), ("fp32", 2)]
    assert rows[0]["ms"]["detect"] is None and 0 < rows[0]["ms"]["invoke"]["p50"] <= rows[0]["ms"]["invoke"]["p90"]
    shots = records(cli("reconstruct", face, photos / "gray.png", "--model", up, "--out", tmp_path / "r", "--json")[1])
    assert [r["image"] for r in shots] == [str(face), str(photos / "gray.png")]
    assert shots[0]["files"] == [str(tmp_path / "r" / "astronaut.json")] and len(shots[0]["faces"]) == 1
    (removed,) = records(cli("gallery", "remove", "astronaut", "--model", up, *gallery, "--json")[1])
    assert removed == {"removed": "astronaut"}


def test_quiet_and_verbose_steer_the_diagnostics(bundles, photos, cli):
    args = ("verify", photos / "two_faces.png", photos / "astronaut.jpg", "--model", bundles["upright"])
    _, _, err = cli(*args)
    assert len(err) == 1 and err[0].startswith("warning: ") and "2 faces found" in err[0]
    assert cli(*args, "--quiet")[2] == []
    verbose = cli(*args, "--verbose")[2]
    assert verbose[0].startswith("info: bundle ") and any(line.startswith("warning: ") for line in verbose)
    assert cli(*args, "--quiet", "--verbose")[0] == EXIT_USAGE


# -- outputs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["dangling-symlink", "under-a-file", "read-only"])
def test_unusable_out_folder_is_one_line(bundles, photos, tmp_path, cli, case):
    if case == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    if case == "dangling-symlink":
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "gone")
        words = ["does not exist"]
    elif case == "under-a-file":
        (tmp_path / "file").write_text("x")
        out, words = tmp_path / "file" / "out", ["is a file"]
    else:
        (tmp_path / "locked").mkdir()
        (tmp_path / "locked").chmod(0o500)
        out, words = tmp_path / "locked" / "out", ["is not writable"]
    one_error(cli("reconstruct", photos / "astronaut.jpg", "--model", bundles["upright"], "--out", out), out, *words)
    assert not (tmp_path / "gone").exists()


def test_same_stems_do_not_overwrite_each_other(bundles, photos, tmp_path, cli):
    """a/face.jpg, b/face.jpg and face.png: face, face-2, face-3 in the order given, each naming its photo."""
    astronaut = cv2.imread(str(photos / "astronaut.jpg"))
    inputs = [tmp_path / "a" / "face.jpg", tmp_path / "b" / "face.jpg", tmp_path / "face.png"]
    for k, path in enumerate(inputs):
        path.parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(path), np.roll(astronaut, 7 * k, axis=1))
    out = tmp_path / "out"
    code, stdout, _ = cli("reconstruct", *inputs, "--model", bundles["upright"], "--out", out, "--obj")
    assert code == EXIT_OK and len(stdout) == 3
    assert sorted(p.name for p in out.iterdir()) == ["face-2.json", "face-2.obj", "face-3.json", "face-3.obj",
                                                     "face.json", "face.obj"]
    images = [json.loads((out / f"{stem}.json").read_text())["image"] for stem in ("face", "face-2", "face-3")]
    assert images == [str(p) for p in inputs]


def test_embedding_only_on_request_and_then_private(bundles, photos, tmp_path, cli):
    face, up = photos / "astronaut.jpg", bundles["upright"]
    assert cli("reconstruct", face, "--model", up, "--out", tmp_path / "plain")[0] == EXIT_OK
    (record,) = json.loads((tmp_path / "plain" / "astronaut.json").read_text())["faces"]
    assert "embedding" not in record and "landmarks68" in record
    assert cli("reconstruct", face, "--model", up, "--out", tmp_path / "bio", "--embedding")[0] == EXIT_OK
    path = tmp_path / "bio" / "astronaut.json"
    assert len(json.loads(path.read_text())["faces"][0]["embedding"]) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- boxes, threads, bench ------------------------------------------------------------------------------


@pytest.mark.parametrize("box", ["nan,10,50,60", "10,10,inf,60", "10,-inf,50,60", "1,2,3"])
def test_box_must_be_finite(bundles, photos, tmp_path, cli, box):
    line = one_error(cli("reconstruct", photos / "astronaut.jpg", "--model", bundles["upright"], "--box", box,
                         "--out", tmp_path / "out"))
    assert "must be x0,y0,x1,y1: four finite numbers" in line and not (tmp_path / "out").exists()


def test_box_outside_the_image_is_refused(bundles, photos, tmp_path, cli):
    up, face = bundles["upright"], photos / "astronaut.jpg"  # 512 x 512
    one_error(cli("verify", face, face, "--model", up, "--box", "600,600,700,700"), "lies mostly outside", face)
    one_error(cli("reconstruct", face, "--model", up, "--box=-90,100,10,200", "--out", tmp_path / "o"),
              "lies mostly outside")
    assert cli("reconstruct", face, "--model", up, "--box=-20,100,80,200", "--out", tmp_path / "o")[0] == EXIT_OK


def test_zero_threads_is_a_usage_error_not_a_bad_model(bundles, photos, cli):
    code, _, err = cli("verify", photos / "astronaut.jpg", photos / "gray.png", "--model", bundles["upright"],
                       "--threads", "0")
    assert code == EXIT_USAGE and "--threads: '0' is not a whole number >= 1" in err[-1]


def test_bench_on_a_photo_without_a_face_says_so(bundles, photos, cli):
    code, out, err = cli("bench", bundles["upright"], "--threads", "1", "--runs", "2", "--image", photos / "noise.png")
    assert out == [] and one_error((code, out, err), "no face found in", photos / "noise.png")


# -- batches, group photos, sideways photos --------------------------------------------------------------


def test_a_batch_goes_on_past_photos_without_a_face(bundles, photos, tmp_path, cli):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a_noise.png", "b_astronaut.jpg", "c_empty.jpg", "d_gray.png"):
        (folder / name).write_bytes((photos / name[2:]).read_bytes())
    out = tmp_path / "out"
    code, stdout, err = cli("reconstruct", folder, "--model", bundles["upright"], "--out", out, "--json")
    line = one_error((code, stdout, err), "2 of 4 photos failed", folder / "a_noise.png", folder / "c_empty.jpg")
    assert "no face found" in line and "is empty" in line
    assert sorted(p.name for p in out.iterdir()) == ["b_astronaut.json", "d_gray.json"]
    assert [("error" in r, Path(r["image"]).name) for r in records(stdout)] == [
        (True, "a_noise.png"), (False, "b_astronaut.jpg"), (True, "c_empty.jpg"), (False, "d_gray.png")]
    gallery = tmp_path / "g.db"
    line = one_error(cli("enroll", "someone", folder, "--model", bundles["upright"], "--gallery", gallery),
                     "2 of 4 photos failed", "nothing enrolled")
    assert "a_noise.png" in line and "c_empty.jpg" in line


def test_group_photos_say_which_face_and_take_face_index(bundles, photos, tmp_path, cli):
    up, group, face = bundles["upright"], photos / "two_faces.png", photos / "astronaut.jpg"
    code, out, err = cli("verify", group, face, "--model", up)
    (used_group, used_face) = json.loads(out[0])["faces"]
    assert code == EXIT_OK and used_group["face"] == 0 and used_group["faces_found"] == 2
    assert used_group["box"][2] < 240 and used_face["faces_found"] == 1  # the larger copy, on the left
    assert len(err) == 1 and f"{group}: 2 faces found, using face 0 (the largest" in err[0] and "--face" in err[0]
    code, out, err = cli("identify", group, "--face", "1", "--model", up, "--gallery", tmp_path / "g.db")
    assert code == EXIT_BAD_INPUT  # no gallery yet: only enroll creates one
    code, out, err = cli("enroll", "right", group, "--face", "1", "--model", up, "--gallery", tmp_path / "g.db",
                         "--json")
    (record,) = records(out)
    assert code == EXIT_OK and record["faces"][0]["face"] == 1 and record["faces"][0]["box"][0] > 240
    assert len(err) == 1 and "right's template holds 1 photo(s)" in err[0]  # --face chosen: no group warning
    found = json.loads(cli("identify", group, "--face", "1", "--model", up, "--gallery", tmp_path / "g.db")[1][0])
    assert found["face"]["face"] == 1 and found["best"] == "right"
    one_error(cli("verify", group, group, "--face", "2", "--model", up), "--face 2", "shows 2 face(s)")


def test_sideways_photo_gets_a_warning(bundles, photos, tmp_path, cli):
    """A photo turned by 90 degrees without EXIF: BlazeFace still finds the face, its eye line near
    vertical (while the model, trained upright, may answer roll 0): a warning, and the result is written."""
    face, up = photos / "astronaut.jpg", bundles["upright"]
    for k, angle in ((1, "-7"), (3, "+4")):  # the measured eye lines: -70 and +46 degrees (upright: +9)
        turned = tmp_path / f"turned{k}.png"
        assert cv2.imwrite(str(turned), np.rot90(cv2.imread(str(face)), k))
        code, _, err = cli("reconstruct", turned, "--model", up, "--out", tmp_path / "t")
        assert code == EXIT_OK and len(err) == 1 and f"{turned}: the photo looks sideways (eye line at {angle}" in err[0]
        assert (tmp_path / "t" / f"turned{k}.json").is_file()
    assert cli("reconstruct", face, "--model", up, "--out", tmp_path / "u")[2] == []
    assert "sideways" in cli("verify", turned, face, "--model", up)[2][0]
    assert cli("reconstruct", turned, "--model", up, "--box", "190,240,280,330", "--out", tmp_path / "b")[2] == []


def test_progress_bar_on_a_terminal_only_and_off_with_quiet(bundles, photos, tmp_path):
    """A folder shows a tqdm bar on stderr when stderr is a terminal (a real pty), none with --quiet."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    from test_edge_cli import REPO

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes((photos / "astronaut.jpg").read_bytes())
    shown = {}
    for flags in ((), ("--quiet",)):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal has a size
        result = subprocess.run([sys.executable, "-m", "edge_runtime", "reconstruct", folder, "--model",
                                 bundles["upright"], "--out", tmp_path / "o", *flags], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=slave, timeout=120)
        os.set_blocking(master, False)
        try:
            shown[flags] = os.read(master, 1 << 16).decode()
        except BlockingIOError:  # nothing was written
            shown[flags] = ""
        os.close(slave)
        os.close(master)
        assert result.returncode == EXIT_OK
    assert "0/2" in shown[()] and "photo" in shown[()], shown
    assert shown[("--quiet",)] == ""


def test_only_a_missing_training_extra_is_reported_as_one():
    """A device install missing TensorFlow gets the one-line `pip install 'siamface[train]'`; any other
    missing module (a broken checkout, a stale cache naming an old module) keeps its traceback."""
    import click
    from click.testing import CliRunner

    from siamface.cli.main import SiamfaceGroup

    @click.group(cls=SiamfaceGroup)
    def group() -> None:
        pass

    @group.command()
    @click.argument("module")
    def needs(module: str) -> None:
        __import__(module)

    extra = CliRunner().invoke(group, ["needs", "training_old_name_that_is_gone"])
    assert extra.exit_code == 1 and isinstance(extra.exception, ModuleNotFoundError)
    missing = "scipy.not_a_module"
    result = CliRunner().invoke(group, ["needs", missing])
    assert result.exit_code == EXIT_BAD_INPUT and "siamface[train]" in result.output, result.output
