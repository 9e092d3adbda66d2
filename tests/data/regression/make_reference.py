import numpy as np, json
from perfmap.pipeline import compute
out = {}
for method in ["osvd", "tikhonov", "csvd", "ssvd", "phae"]:
    r = compute("ph/sub-01.nii.gz", aif="ph/sub-01_aifmask.nii.gz", mask="ph/sub-01_brainmask.nii.gz",
                method=method, rois={"tumour": "ph/sub-01_tumour.nii.gz"}, ref="ph/sub-01_ref.nii.gz",
                out_dir=f"o_{method}", method_params={"device": "cpu"} if method == "phae" else None)
    for k, v in r.maps.items():
        out[f"{method}_{k}"] = v
    out[f"{method}_aif"] = r.aif
    print(method, r.provenance["voxels"], r.provenance["rois"]["tumour"]["cbf_ratio"])
r = compute("ph/sub-01.nii.gz", aif="ph/sub-01_aifmask.nii.gz", mask="auto", method="osvd", out_dir="o_auto")
for k, v in r.maps.items():
    out[f"automask_{k}"] = v
print(r.provenance["voxels"])
np.savez_compressed("regression_maps.npz", **out)
