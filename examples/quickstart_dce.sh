#!/usr/bin/env bash
# Simulate one DCE phantom with ground truth (SPGR signal, Parker AIF, extended Tofts
# tissue, a variable-flip-angle series), compute Ktrans, ve, vp, kep and T10 with
# extended Tofts, and print the tumour's Ktrans next to the truth.
#
# Usage: examples/quickstart_dce.sh [WORK_DIR]   (default: ${TMPDIR:-/tmp}/perfmap-dce-demo)
# Running it again replaces the files of the previous run (--overwrite).
set -euo pipefail
work=${1:-${TMPDIR:-/tmp}/perfmap-dce-demo}
perfmap simulate "$work" --kind dce --subjects 1 --hgg-fraction 1 --snr 30 --seed 7 \
  --overwrite -q
perfmap compute "$work/sub-01.nii.gz" --kind dce --vfa "$work/sub-01_vfa.nii.gz" \
  --aif "$work/sub-01_aifmask.nii.gz" --mask "$work/sub-01_brainmask.nii.gz" \
  --roi tumour="$work/sub-01_tumour.nii.gz" --ref "$work/sub-01_ref.nii.gz" \
  --out-dir "$work/maps_etofts" --overwrite
python - "$work/sub-01.json" "$work/maps_etofts/sub-01_perfmap.json" <<'PY'
import json, sys
truth = json.load(open(sys.argv[1]))["perfmapPhantom"]["truth_roi_means"]
fit = json.load(open(sys.argv[2]))["rois"]["tumour"]
for key in ("ktrans", "ve", "vp"):
    print(f"tumour {key}: {fit[key + '_mean']:.4f} (truth {truth[key]['mean_tumour']:.4f})")
PY
echo "maps written under $work/maps_etofts"
