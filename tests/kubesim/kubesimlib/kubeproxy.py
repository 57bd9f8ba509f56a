import ipaddress
class Alloc:
    def __init__(self): self.n=1
    def allocate(self, svc):
        spec=svc.setdefault("spec",{})
        if spec.get("clusterIP")=="None": spec["clusterIPs"]=["None"]; return
        self.n+=1; ip="127.2.0.%d"%self.n; spec["clusterIP"]=ip; spec["clusterIPs"]=[ip]
    def release(self, svc): pass
class KubeProxy:
    def __init__(self, *a): self.allocator=Alloc()
    def start(self): pass
    def stop(self): pass
