/* rpc_table.h: the one table of ember's unary RPCs, shared by the server
 * (agent/server/server.c builds its method table and the handler prototypes
 * from it) and emberctl (agent/ctl/commands.c finds the method of a command in
 * it). Everything else about a method comes from the protobuf-c service
 * descriptor: the path is "/" SERVICE_NAME "/" METHOD, the request and
 * response messages are the descriptor's input and output (the server refuses
 * at start-up a row whose method the descriptor lacks, and unit_test_rpc_table
 * checks the table against the descriptors and enums).
 *
 * A row: X(SVC_DESC, SVC_NAME, METHOD, HANDLER, SLOW, OP, MUTATES, CTL)
 *   SVC_DESC  the ProtobufCServiceDescriptor object (no &)
 *   SVC_NAME  its full name as a string literal (checked against SVC_DESC)
 *   METHOD    the method's name in the proto, as a token
 *   HANDLER   the server's srv_unary_fn (prototype generated from here)
 *   SLOW      true: a lifecycle operation, run on its own thread
 *   OP        the agent_op it performs (types.h; metrics count its failures
 *             and names it with agent_op_name), AGENT_OP_NONE otherwise
 *   MUTATES   false for read-only methods (the request fuzzer skips them)
 *   CTL       emberctl's command name for it, or NULL
 * Adding a unary RPC touches five places: the proto, a row here, its handler,
 * the manager operation it calls, and emberctl's command (docs/architecture.md
 * "Adding an RPC"). Streaming methods are rows of server.c's table. */
#ifndef EMBER_AGENT_RPC_TABLE_H
#define EMBER_AGENT_RPC_TABLE_H

#define EMBER_INSTANCE_SVC ember__v1__instance_service__descriptor, "ember.v1.InstanceService"
#define EMBER_IMAGE_SVC ember__v1__image_service__descriptor, "ember.v1.ImageService"

/* EMBER_RPC_ROW expands a row whose first column is a two-column service
 * macro such as EMBER_INSTANCE_SVC. */
#define EMBER_RPC_ROW(X, ...) X(__VA_ARGS__)

#define EMBER_UNARY_RPCS(X)                                                                        \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, CreateInstance, srv_unary_create, true, AGENT_OP_CREATE,    \
                true, "create")                                                                    \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, GetInstance, srv_unary_get, false, AGENT_OP_NONE, false,    \
                "get")                                                                             \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ListInstances, srv_unary_list, false, AGENT_OP_NONE, false, \
                "list")                                                                            \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, StartInstance, srv_unary_start, true, AGENT_OP_START, true, \
                "start")                                                                           \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, StopInstance, srv_unary_stop, true, AGENT_OP_STOP, true,    \
                "stop")                                                                            \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, PauseInstance, srv_unary_pause, true, AGENT_OP_PAUSE, true, \
                "pause")                                                                           \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ResumeInstance, srv_unary_resume, true, AGENT_OP_RESUME,    \
                true, "resume")                                                                    \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, StandbyInstance, srv_unary_standby, true, AGENT_OP_STANDBY, \
                true, "standby")                                                                   \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, RestoreInstance, srv_unary_restore, true, AGENT_OP_RESTORE, \
                true, "restore")                                                                   \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, DeleteInstance, srv_unary_delete, true, AGENT_OP_DELETE,    \
                true, "delete")                                                                    \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ListHypervisors, srv_unary_list_hypervisors, false,         \
                AGENT_OP_NONE, false, "hypervisors")                                               \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ListNetworks, srv_unary_list_networks, false,               \
                AGENT_OP_NONE, false, "networks")                                                  \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ForkInstance, srv_unary_fork, true, AGENT_OP_NONE, true,    \
                "fork")                                                                            \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, CreateSnapshot, srv_unary_snapshot_create, true,            \
                AGENT_OP_NONE, true, "snapshot")                                                   \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, ListSnapshots, srv_unary_snapshot_list, false,              \
                AGENT_OP_NONE, false, "snapshots")                                                 \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, DeleteSnapshot, srv_unary_snapshot_delete, true,            \
                AGENT_OP_NONE, true, "rmsnapshot")                                                 \
  EMBER_RPC_ROW(X, EMBER_INSTANCE_SVC, HoldInstance, srv_unary_hold, false, AGENT_OP_NONE, true,   \
                "hold")                                                                            \
  EMBER_RPC_ROW(X, EMBER_IMAGE_SVC, ListImages, srv_unary_image_list, false, AGENT_OP_NONE, false, \
                "images")                                                                          \
  EMBER_RPC_ROW(X, EMBER_IMAGE_SVC, GetImage, srv_unary_image_get, false, AGENT_OP_NONE, false,    \
                NULL)                                                                              \
  EMBER_RPC_ROW(X, EMBER_IMAGE_SVC, DeleteImage, srv_unary_image_delete, true, AGENT_OP_NONE,      \
                true, "rmi")

#endif
