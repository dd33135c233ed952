# Nomad job: each client node runs the signed image as a program
# (raw_exec: the image is a static executable; the task user needs /dev/kvm).
# Not run here (no Nomad on the build host); see docs/DEPLOY.md.
job "smolvm-app" {
  datacenters = ["dc1"]
  type        = "service"

  group "app" {
    count = 3

    constraint {
      attribute = "${attr.kernel.name}"
      value     = "linux"
    }

    task "fetch" {
      driver = "raw_exec"
      lifecycle {
        hook = "prestart"
      }
      config {
        command = "/usr/local/bin/smolvm"
        args    = ["pull", "--key", "/etc/smolvm/trust",
                   "registry.example.com/apps/hello:1.4", "-o", "${NOMAD_ALLOC_DIR}/app.vm"]
      }
    }

    task "app" {
      driver = "raw_exec"
      user   = "smolvm"   # a member of group kvm
      config {
        command = "${NOMAD_ALLOC_DIR}/app.vm"
        args    = ["--smolvm-mem=256"]
      }
      env {
        SMOLVM_TRUST = "/etc/smolvm/trust"
      }
      resources {
        cpu    = 500
        memory = 320   # guest memory + the stub
      }
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"
    }
  }
}
