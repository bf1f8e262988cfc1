"""The demo model: synthetic shapes data, pixel checker, and the training recipe that builds ldm_cli/assets/demo."""
