// Which of this process's containers publishes which port of 127.0.0.1, and how the other containers
// reach it. Apart from containers.ts so that the harness can ask without loading testcontainers.

/** Host port -> the alias and port of that server on the containers' network. */
export const addresses = new Map<number, { host: string; port: number }>();

/**
 * How a container reaches the server published on 127.0.0.1:hostPort: its alias and port on the
 * network, or undefined when no container of this process publishes that port.
 */
export function addressInNetwork(hostPort: number): { host: string; port: number } | undefined {
  return addresses.get(hostPort);
}
