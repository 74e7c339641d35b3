# vmre as a Nomad job: one allocation running the runtimes of its config
# file, registered in Consul with a gRPC health check for the engine and
# one for the VM. See docs/deploy.md for what Nomad does and what vmre
# does, and for the timeout arithmetic.
job "vmre" {
  type = "service"

  group "node" {
    count = 1

    # Nomad restarts the vmre task in place when it exits non-zero (with
    # --exit-on-failure: as soon as a runtime has failed for good) or when
    # the engine's check fails; after 3 restarts in 5 minutes the
    # allocation fails and the job's reschedule policy places a new one.
    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "fail"
    }

    network {
      port "api" {
        static = 9660
      }
    }

    service {
      name     = "vmre"
      port     = "api"
      provider = "consul"

      # The engine: SERVING until its shutdown begins.
      check {
        name     = "engine"
        type     = "grpc"
        port     = "api"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      # The VM: SERVING while runtime subnet-a is running and its liveness
      # probe passes. Restarting it is vmre's job (its restart policy), so
      # this check only takes the service out of Consul's answers.
      check {
        name         = "subnet-a"
        type         = "grpc"
        port         = "api"
        grpc_service = "subnet-a"
        interval     = "10s"
        timeout      = "2s"
      }
    }

    task "vmre" {
      driver = "exec"

      # SIGTERM, then up to kill_timeout for vmre to stop its plugins
      # itself before Nomad kills the task: vmre needs 14 s with the
      # defaults. The client's max_kill_timeout (30 s by default) caps it.
      kill_signal  = "SIGTERM"
      kill_timeout = "20s"

      config {
        command = "/usr/local/bin/vmre"
        args = [
          "run",
          "--config", "${NOMAD_TASK_DIR}/vmre.yaml",
          "--listen", "${NOMAD_ADDR_api}",
          "--token-file", "${NOMAD_SECRETS_DIR}/api-token",
          "--log-format", "json",
          "--exit-on-failure",
        ]
      }

      # The API token from Nomad Variables (nomad var put
      # nomad/jobs/vmre api_token=...), private to the task.
      template {
        data        = "{{ with nomadVar \"nomad/jobs/vmre\" }}{{ .api_token }}{{ end }}"
        destination = "secrets/api-token"
        perms       = "0600"
        change_mode = "restart"
      }

      template {
        destination = "local/vmre.yaml"
        change_mode = "signal"
        change_signal = "SIGHUP"
        data        = <<-EOT
          runtimes:
            - name: subnet-a
              path: /opt/vms/subnet-a
              restart: {policy: on-failure, initial_backoff: 1s, max_backoff: 1m, max_restarts: 5, window: 10m}
              health: {interval: 10s, timeout: 1s, failure_threshold: 3}
          EOT
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
