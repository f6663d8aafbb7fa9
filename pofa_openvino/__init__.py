"""pofa-openvino."""
