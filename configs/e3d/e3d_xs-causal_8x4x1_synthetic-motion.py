# Causal E3D-XS on the built-in synthetic motion dataset: temporal padding on
# the past side only and running-mean squeeze-excitation, so the network can
# classify a live video frame by frame (tools/deploy/stream.py). Same recipe,
# FLOPs and parameters as e3d_xs_8x4x1_synthetic-motion.py:
#   python tools/train.py configs/e3d/e3d_xs-causal_8x4x1_synthetic-motion.py
_base_ = ['./e3d_xs_8x4x1_synthetic-motion.py']

model = dict(
    # Recognizer3D plus init_stream / stream_step; same weights.
    type='StreamingRecognizer3D',
    backbone=dict(causal=True))
