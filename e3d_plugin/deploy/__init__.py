"""Deployment of E3D recognizers: ONNX export checked with onnxruntime, and
streaming inference of causal E3D (also as an ONNX step with explicit state).

Needs the ``deploy`` extra (``pip install -e ".[deploy]"``: onnx,
onnxruntime) for the ONNX parts; streaming in PyTorch needs nothing more.
"""
from .errors import DeployError
from .export import (MAX_VOXELS, RecognizerLogits, build_recognizer,
                     check_clip, check_device, check_input_file,
                     check_input_size, check_output_file, export_onnx,
                     interleaved_latency, load_checkpoint, load_config,
                     ort_session, ort_vs_torch_latency, parity, random_clips,
                     randomize_weights, recipe_clip, summarize, try_forward,
                     write_onnx)
from .stream import (StreamStepModule, export_stream_onnx, onnx_stream_video,
                     state_nbytes, stream_video)
from .video import VideoFrames, read_video, spatial_steps

__all__ = [
    'DeployError', 'MAX_VOXELS', 'RecognizerLogits', 'build_recognizer',
    'check_clip', 'check_device', 'check_input_file', 'check_input_size',
    'check_output_file', 'write_onnx', 'export_onnx', 'interleaved_latency',
    'load_checkpoint', 'load_config', 'ort_session', 'ort_vs_torch_latency',
    'parity', 'random_clips', 'randomize_weights', 'recipe_clip',
    'summarize', 'try_forward', 'StreamStepModule', 'export_stream_onnx',
    'onnx_stream_video', 'state_nbytes', 'stream_video', 'VideoFrames',
    'read_video', 'spatial_steps'
]
