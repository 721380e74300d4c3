"""vmexit: which guest instructions make a virtual machine exit, and what each exit costs."""
__version__ = "0.1.0"
