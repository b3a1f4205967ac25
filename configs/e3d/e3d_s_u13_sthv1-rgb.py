# E3D-S on Something-Something V1: 13 frames sampled uniformly over
# the whole video (one per segment), 160px crops, no horizontal flip (it
# would swap classes such as "pushing left to right"); SGD with a cosine
# schedule over 100 epochs (lr 0.2 for a total batch of 128 = 8 GPUs x
# 16 clips; --auto-scale-lr rescales it). Set load_from to a Kinetics-400
# checkpoint of the same model to fine-tune from it.
_base_ = [
    '../_base_/models/e3d.py', 'mmaction::_base_/default_runtime.py'
]

clip_len = 13
crop_size = 160
short_side = 182

model = dict(
    backbone=dict(arch='E3D-S'),
    cls_head=dict(num_classes=174))

dataset_type = 'RawframeDataset'
data_root = 'data/sthv1/rawframes'
data_root_val = 'data/sthv1/rawframes'
ann_file_train = 'data/sthv1/sthv1_train_list_rawframes.txt'
ann_file_val = 'data/sthv1/sthv1_val_list_rawframes.txt'
ann_file_test = 'data/sthv1/sthv1_val_list_rawframes.txt'
dataset_extra = dict(filename_tmpl='{:05}.jpg')
prefix_key = 'img'

file_client_args = dict(io_backend='disk')
train_pipeline = [
    dict(type='UniformSample', clip_len=clip_len, num_clips=1),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='RandomResizedCrop'),
    dict(type='Resize', scale=(crop_size, crop_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='UniformSample', clip_len=clip_len, num_clips=1,
         test_mode=True),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='UniformSample', clip_len=clip_len, num_clips=2,
         test_mode=True),
    dict(type='RawFrameDecode', **file_client_args),
    dict(type='Resize', scale=(-1, short_side)),
    dict(type='ThreeCrop', crop_size=short_side),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_train,
        data_prefix={prefix_key: data_root},
        pipeline=train_pipeline,
        **dataset_extra))
val_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_val,
        data_prefix={prefix_key: data_root_val},
        pipeline=val_pipeline,
        test_mode=True,
        **dataset_extra))
test_dataloader = dict(
    batch_size=1,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        ann_file=ann_file_test,
        data_prefix={prefix_key: data_root_val},
        pipeline=test_pipeline,
        test_mode=True,
        **dataset_extra))

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

max_epochs = 100
warmup_epochs = 5
train_cfg = dict(
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_begin=1,
    val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.2, momentum=0.9, weight_decay=5e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=40, norm_type=2))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=0,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        convert_to_iter_based=True)
]

default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=3, save_best='auto'),
    logger=dict(interval=100))
auto_scale_lr = dict(enable=False, base_batch_size=128)
