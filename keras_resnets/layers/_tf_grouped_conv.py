"""TensorFlow kernel of `GroupedConv2D(implementation="custom_gradient")`.

Imported only on the TensorFlow backend: the one backend-specific part of
the grouped convolution (`grouped_conv.py` itself uses `keras.ops` only).

On the CPU, TensorFlow runs a grouped *forward* convolution fast (oneDNN;
a ResNeXt-50 stage-2 3x3, 128 channels, 32 groups, batch 4 at 56x56: about
3 ms, against 8 ms as 32 convolutions on channel slices), but its grouped
*gradient* kernels are hundreds of times slower, and `keras.ops.conv`
routes grouped convolutions through XLA, slower again. This kernel calls
`tf.nn.conv2d` directly for the forward pass and supplies the gradient:

- input gradient, stride 1: itself a grouped forward convolution, of the
  padded upstream gradient with the kernel flipped in space and its input
  and output channels swapped within each group (2-3x faster than one
  backward convolution per group, measured at every ResNeXt-50 stage);
- input gradient with a stride: one `Conv2DBackpropInput` per group (the
  equivalent forward convolution would run over a zero-dilated gradient);
- filter gradient: one `Conv2DBackpropFilter` per group. (A formulation as
  one grouped forward convolution with batch and channels swapped was
  faster at batch 4 but up to 2.6x slower at batch 16, and no faster over a
  whole ResNeXt-50 training step, so it was left out.)

Exact: the tests compare outputs and both gradients with Keras's own
`Conv2D(groups=...)` within 1e-5.
"""

from __future__ import annotations

import tensorflow as tf


def _per_group(op, tensors: dict, groups, strides, padding, **sizes):
    """`op` (a `tf.raw_ops` gradient) on each group's slices of `tensors`, concatenated.

    `tensors` maps the op's argument names to the full tensors, split into
    `groups` along the channels.
    """
    names = list(tensors)
    slices = zip(*(tf.split(tensors[n], groups, axis=-1) for n in names), strict=True)
    outputs = [
        op(
            **dict(zip(names, group, strict=True)),
            strides=[1, *strides, 1],
            padding=padding.upper(),
            **sizes,
        )
        for group in slices
    ]
    return tf.concat(outputs, axis=-1)


def _strided_input_gradient(dy, kernel, x_shape, strides, padding, groups):
    """Per-group `Conv2DBackpropInput`: faster than a dilated gradient for strides > 1."""
    in_shape = tf.stack([x_shape[0], x_shape[1], x_shape[2], kernel.shape[2]])
    tensors = {"out_backprop": dy, "filter": kernel}
    op = tf.raw_ops.Conv2DBackpropInput
    return _per_group(op, tensors, groups, strides, padding, input_sizes=in_shape)


def _input_gradient(dy, kernel, padding, groups):
    """Stride-1 input gradient as one grouped forward convolution.

    With stride 1 the forward padding is static ("same": `(k - 1) // 2`
    before and the rest after; "valid": none), so the upstream gradient is
    padded by its complement, `k - 1 - before` before and `k - 1 - after`
    after, and convolved "valid" with the transformed kernel.
    """
    kh, kw, cg, filters = kernel.shape
    og = filters // groups
    pads = []
    for k in (kh, kw):
        before = (k - 1) // 2 if padding == "same" else 0
        after = k - 1 - before if padding == "same" else 0
        pads.append([k - 1 - before, k - 1 - after])
    dy = tf.pad(dy, [[0, 0], *pads, [0, 0]])
    k = tf.reshape(kernel, (kh, kw, cg, groups, og))
    k = tf.reverse(k, axis=[0, 1])
    k = tf.transpose(k, (0, 1, 4, 3, 2))  # (kh, kw, og, groups, cg)
    k = tf.reshape(k, (kh, kw, og, groups * cg))
    return tf.nn.conv2d(dy, k, strides=1, padding="VALID")


def _filter_gradient(x, dy, kernel_shape, strides, padding, groups):
    """One `Conv2DBackpropFilter` per group, concatenated."""
    kh, kw, cg, filters = kernel_shape
    sizes = [kh, kw, cg, filters // groups]
    op = tf.raw_ops.Conv2DBackpropFilter
    return _per_group(
        op, {"input": x, "out_backprop": dy}, groups, strides, padding, filter_sizes=sizes
    )


def grouped_conv2d(x, kernel, strides, padding: str, groups: int):
    """Grouped `tf.nn.conv2d` with the hand-written gradient described above.

    Args:
        x: `(N, H, W, C)` input.
        kernel: `(kh, kw, C / groups, filters)` kernel.
        strides: pair of ints.
        padding: `"valid"` or `"same"`.
        groups: number of groups.

    Returns:
        The `(N, Ho, Wo, filters)` output, as `tf.nn.conv2d`.
    """
    strides = tuple(strides)

    @tf.custom_gradient
    def conv(x, kernel):
        y = tf.nn.conv2d(x, kernel, strides=strides, padding=padding.upper())

        def grad(dy):
            if strides == (1, 1):
                dx = _input_gradient(dy, kernel, padding, groups)
            else:
                dx = _strided_input_gradient(dy, kernel, tf.shape(x), strides, padding, groups)
            dk = _filter_gradient(x, dy, kernel.shape, strides, padding, groups)
            return dx, dk

        return y, grad

    return conv(x, kernel)
