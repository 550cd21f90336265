"""placeholder"""
def check_resume_shapes(cfg, path):
    return None
