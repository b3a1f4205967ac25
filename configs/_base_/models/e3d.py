# An action recognizer with an E3D backbone; the plugin is imported by
# mmengine before the model is built.
custom_imports = dict(imports=['e3d_plugin'], allow_failed_imports=False)

model = dict(
    type='Recognizer3D',
    backbone=dict(type='E3D', arch='E3D-M'),
    cls_head=dict(
        type='X3DHead',
        in_channels=512,
        num_classes=400,
        spatial_type='avg',
        dropout_ratio=0.5,
        fc1_bias=False,
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[114.75, 114.75, 114.75],
        std=[57.38, 57.38, 57.38],
        format_shape='NCTHW'),
    train_cfg=None,
    test_cfg=None)
