#!/usr/bin/env bash
# End-to-end cohort example: simulate DSC phantoms with known grades, compute the
# perfusion maps of every subject with two deconvolution methods, and write the
# glioma-grading report (ROC/AUC, Youden cut-off, Mann-Whitney U).
#
# Usage: examples/cohort.sh [WORK_DIR]   (default: ${TMPDIR:-/tmp}/perfmap-cohort-example)
# Environment: PERFMAP_EXAMPLE_SUBJECTS (8), PERFMAP_EXAMPLE_SHAPE (32x32x6),
#              PERFMAP_EXAMPLE_JOBS (2), PERFMAP_EXAMPLE_NBOOT (1000).
set -euo pipefail

work="${1:-${TMPDIR:-/tmp}/perfmap-cohort-example}"
subjects="${PERFMAP_EXAMPLE_SUBJECTS:-8}"
shape="${PERFMAP_EXAMPLE_SHAPE:-32x32x6}"
jobs="${PERFMAP_EXAMPLE_JOBS:-2}"
nboot="${PERFMAP_EXAMPLE_NBOOT:-1000}"

# 1. Phantoms with ground truth and a manifest (subject, input, masks, grade, TE, TR, SNR).
perfmap simulate "$work/phantoms" --subjects "$subjects" --snr 50 --shape "$shape" \
    --frames 50 --seed 1 --overwrite -q

# 2. Every subject with oSVD and Tikhonov, in worker processes; one row per
#    subject and method in cohort.tsv, maps in batch/<subject>/<method>/.
perfmap batch "$work/phantoms/manifest.tsv" --out-dir "$work/batch" \
    --method osvd,tikhonov --jobs "$jobs" --overwrite

# 3. The grading report: one self-contained HTML file, plus JSON and CSV.
perfmap report "$work/batch/cohort.tsv" --out "$work/report.html" \
    --json "$work/report.json" --csv "$work/report.csv" --n-boot "$nboot" --overwrite -q

echo "report: $work/report.html"
