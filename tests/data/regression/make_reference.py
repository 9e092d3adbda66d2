"""Writes maps_a8f4493.npz: run from tests/data/regression with perfmap at commit a8f4493
(paths relative to a copy of the phantom written by `perfmap simulate`, see ../README.md)."""
import numpy as np

from perfmap.pipeline import compute


def main():
    out = {}
    for method in ["osvd", "tikhonov", "csvd", "ssvd", "phae"]:
        r = compute("ph/sub-01.nii.gz", aif="ph/sub-01_aifmask.nii.gz",
                    mask="ph/sub-01_brainmask.nii.gz", method=method,
                    rois={"tumour": "ph/sub-01_tumour.nii.gz"}, ref="ph/sub-01_ref.nii.gz",
                    out_dir=f"o_{method}",
                    method_params={"device": "cpu"} if method == "phae" else None)
        for k, v in r.maps.items():
            out[f"{method}_{k}"] = v
        out[f"{method}_aif"] = r.aif
    r = compute("ph/sub-01.nii.gz", aif="ph/sub-01_aifmask.nii.gz", mask="auto",
                method="osvd", out_dir="o_auto")
    for k, v in r.maps.items():
        out[f"automask_{k}"] = v
    np.savez_compressed("maps_a8f4493.npz", **out)


if __name__ == "__main__":
    main()
