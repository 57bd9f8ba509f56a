class Kubelet:
    def __init__(self, *a): pass
    def start(self): pass
    def stop(self): pass
