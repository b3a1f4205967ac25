# E3D-XS on the built-in synthetic motion dataset, trainable on a CPU:
#   python tools/data/synthetic_motion.py --out data/synthetic_motion
#   python tools/train.py configs/e3d/e3d_xs_8x4x1_synthetic-motion.py
# 8 frames sampled every 4th, 64px clips decoded from real video files
# through mmaction2's decord pipeline. No flip: it would swap the left and
# right classes.
_base_ = [
    '../_base_/models/e3d.py', 'mmaction::_base_/default_runtime.py'
]

clip_len = 8
frame_interval = 4
crop_size = 64

model = dict(
    # channels_last_3d trains about 2x faster on CPU; on a GPU the backbone
    # keeps the contiguous layout whatever this says (channels_last_3d made
    # training 1.7x slower there in fp32, 7.5x with AMP, on an H200)
    backbone=dict(arch='E3D-XS', channels_last=True),
    cls_head=dict(
        _delete_=True,
        type='I3DHead',
        in_channels=256,
        num_classes=10,
        spatial_type='avg',
        dropout_ratio=0.2,
        init_std=0.01,
        average_clips='prob'),
    data_preprocessor=dict(
        mean=[127.5, 127.5, 127.5], std=[64.0, 64.0, 64.0]))

dataset_type = 'VideoDataset'
data_root = 'data/synthetic_motion'
ann_file_train = f'{data_root}/train_list.txt'
ann_file_val = f'{data_root}/val_list.txt'

train_pipeline = [
    dict(type='DecordInit'),
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=1),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, crop_size)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(
        type='SampleFrames',
        clip_len=clip_len,
        frame_interval=frame_interval,
        num_clips=1,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, crop_size)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
# What mmaction.apis.inference_recognizer runs on a video: the validation
# clip (one centred clip, one centre crop).
test_pipeline = val_pipeline

train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_train,
        data_prefix=dict(video=f'{data_root}/videos'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_val,
        data_prefix=dict(video=f'{data_root}/videos'),
        pipeline=val_pipeline,
        test_mode=True))
# Testing uses the validation clips, so tools/test.py on a checkpoint
# reports the accuracy logged for it during training.
test_dataloader = val_dataloader

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_begin=1,
    val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=4e-3, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 1,
        eta_min=1e-5,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True)
]

default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='acc/top1'),
    logger=dict(interval=10))
randomness = dict(seed=0, deterministic=False)
auto_scale_lr = dict(enable=False, base_batch_size=16)
