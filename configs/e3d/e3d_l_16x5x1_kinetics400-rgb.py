# E3D-L on Kinetics-400: 16 frames sampled every 5th, 312px crops (X3D-L).
_base_ = ['./e3d_m_16x5x1_kinetics400-rgb.py']

clip_len = 16
frame_interval = 5
crop_size = 312
short_side = 356

model = dict(backbone=dict(arch='E3D-L'))

file_client_args = dict(io_backend='disk')
train_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=clip_len,
         frame_interval=frame_interval, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=clip_len,
         frame_interval=frame_interval, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='DecordInit', **file_client_args),
    dict(type='SampleFrames', clip_len=clip_len,
         frame_interval=frame_interval, num_clips=10, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='ThreeCrop', crop_size=short_side),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
# 312px clips: half the clips per GPU of E3D-M, half its learning rate.
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=val_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.1))
auto_scale_lr = dict(enable=False, base_batch_size=64)
