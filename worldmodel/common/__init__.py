"""What every part of ``worldmodel`` shares: errors, atomic writes, device and precision, config plumbing."""
