"""`--ckpt` fingerprints: equal for the same files, different once a file changes."""
import os
import shutil

from firefly_eval.checkpoints import fingerprint


def test_fingerprint_follows_the_files(tiny_llama, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    first = fingerprint(str(model))
    assert fingerprint(str(model)) == first and len(first) == 16
    weights = next(model.glob("*.safetensors"))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # retrained in place
    assert fingerprint(str(model)) != first
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    assert fingerprint(str(copy)) != fingerprint(str(model))  # another folder is another model
