import { cors } from "../_shared/cors.ts";

Deno.serve(async (req) => {
  const event = await req.json();
  return Response.json({ status: "received", type: event.type }, { headers: cors });
});
